"""Units, sensitivity, the plan and `edgec plan` / `edgec compress --plan` on tiny models."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from conftest import cli_json, run_cli

from edgec.calibration.windows import calibration_windows
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.models.loading import load_model
from edgec.planner.deployment import model_shape
from edgec.planner.plan import Constraints, PlanSettings, make_plan, prepare
from edgec.planner.plan_schema import plan_json
from edgec.planner.profiles import load_profile
from edgec.planner.sensitivity import SensitivityCache, SensitivitySettings, measure_sensitivity, probe_candidate
from edgec.planner.units import planning_units, unit_candidates

FORMATS = [parse_format(f) for f in ("fp16", "int8", "int4:g32", "int3:g32", "2:4")]
FAST = SensitivitySettings(samples=4, seq_len=128, loss_samples=2, loss_seq_len=64, loss_every=2)


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_model(tiny_llama_dir)


@pytest.fixture(scope="module")
def llama_table(llama, tmp_path_factory):
    units = planning_units(llama)
    candidates = {u.label: unit_candidates(u, FORMATS, "auto") for u in units}
    cache = SensitivityCache(tmp_path_factory.mktemp("sens-cache"))
    before = {n: p.detach().clone() for n, p in llama.model.named_parameters()}
    table = measure_sensitivity(llama, units, candidates, FAST, cache, progress=False)
    after = dict(llama.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before), "measuring sensitivity changed the model"
    return units, candidates, table, cache


def test_forked_workers_measure_what_one_process_measures(llama, llama_table):
    from edgec.planner.task_executors import ForkPoolExecutor

    units, candidates, table, _ = llama_table
    before = {n: p.detach().clone() for n, p in llama.model.named_parameters()}
    pooled = measure_sensitivity(llama, units, candidates, FAST, None, progress=False, executor=ForkPoolExecutor(2))
    assert all(torch.equal(before[n], p) for n, p in llama.model.named_parameters())
    assert pooled.errors.keys() == table.errors.keys()
    for key, inline in table.errors.items():  # one torch thread per worker: sums in another order
        got = pooled.errors[key]
        assert got.measured == inline.measured and (got.output is None) == (inline.output is None), key
        assert (got.tensor, got.output or 0, got.loss) == pytest.approx((inline.tensor, inline.output or 0, inline.loss),
                                                                        rel=1e-4, abs=1e-12), key


def test_layer_output_error_by_bands_of_rows_is_the_whole(monkeypatch):
    from edgec.planner import sensitivity_tasks

    rng = np.random.default_rng(0)
    w, x = rng.standard_normal((37, 24), dtype=np.float32), rng.standard_normal((50, 24), dtype=np.float32)
    hessian = torch.from_numpy(x.T @ x)
    expected = float(np.trace(w.astype(np.float64) @ hessian.double().numpy() @ w.T.astype(np.float64)))
    monkeypatch.setattr(sensitivity_tasks, "SQUARES_CHUNK", 24 * 5)  # 5 rows a band, the last one short
    assert sensitivity_tasks.hessian_trace(w, hessian) == pytest.approx(expected, rel=1e-5)
    q = np.round(w)
    tensor, output = sensitivity_tasks.relative_errors([w], [q], hessian, sensitivity_tasks.squared_norms([w], hessian))
    d = (w - q).astype(np.float64)
    assert tensor == pytest.approx((d**2).sum() / (w.astype(np.float64) ** 2).sum(), rel=1e-6)
    assert output == pytest.approx(np.trace(d @ hessian.double().numpy() @ d.T) / expected, rel=1e-5)


def test_worker_processes_are_for_the_cpu():
    from edgec.planner.task_executors import ForkPoolExecutor, InlineExecutor, task_executor

    assert isinstance(task_executor(1, torch.device("cuda")), InlineExecutor)
    assert isinstance(task_executor(2, torch.device("cpu")), ForkPoolExecutor)
    with pytest.raises(EdgecError, match="--workers 2: worker processes compute on the CPU"):
        task_executor(2, torch.device("cuda"))


def test_units_keep_fused_layers_together_and_the_head_last(llama):
    units = planning_units(llama)
    assert [len(u.layers) for u in units] == [3, 1, 2, 1, 3, 1, 2, 1, 1]
    assert units[0].label == "model.layers.0.self_attn.{q_proj,k_proj,v_proj}" and units[-1].is_head
    assert len(planning_units(llama, fuse=False, include_head=False)) == 14


def test_head_takes_rtn_and_no_sparsity(llama):
    head = planning_units(llama)[-1]
    cands = unit_candidates(head, FORMATS, "auto")
    assert {c.method for c in cands} == {"rtn"} and not any(c.format.is_sparse for c in cands)
    block = unit_candidates(planning_units(llama)[0], FORMATS, "auto")
    assert {c.key for c in block} == {"fp16@rtn", "int8@rtn", "int4:g32@gptq", "int3:g32@gptq", "2:4@sparsegpt"}


def test_measured_loss_is_the_kl_of_the_model_with_that_unit_changed(llama, llama_table):
    """Recompute one entry by a plain full forward of the changed model: the pipeline's shortcut must agree."""
    units, candidates, table, _ = llama_table
    unit = units[2]  # block 0's gate/up: the loss runs through block 1 from cached hidden states
    cand = next(c for c in candidates[unit.label] if c.key == "int8@rtn")
    assert table.get(unit, cand).measured  # unit index 2 is on the every-2nd sample
    from edgec.passes import RTN, LayerConfig

    ids, _ = calibration_windows(llama.tokenizer, FAST.loss_samples, FAST.loss_seq_len)
    refs = {r.name: r for r in llama.adapter.linears(llama.model)}
    with torch.no_grad():
        ref_lp = torch.log_softmax(llama.model(input_ids=ids).logits.double(), -1)
        saved = [refs[n].weight().clone() for n in unit.layers]
        for n in unit.layers:
            w = refs[n].weight().float().numpy()
            refs[n].set_weight(torch.from_numpy(RTN().compress(w, LayerConfig(cand.format, "rtn"), None, n).weight))
        lp = torch.log_softmax(llama.model(input_ids=ids).logits.double(), -1)
        for n, w in zip(unit.layers, saved):
            refs[n].set_weight(w)
    direct = float((ref_lp.exp() * (ref_lp - lp)).sum(-1).mean())
    assert table.get(unit, cand).loss == pytest.approx(direct, rel=1e-3)


def test_sensitivity_orders_formats_and_marks_what_it_predicted(llama_table):
    units, candidates, table, _ = llama_table
    for unit in units[:-1]:
        by = {c.key: table.get(unit, c) for c in candidates[unit.label]}
        assert by["fp16@rtn"].loss == 0.0
        assert by["int8@rtn"].output < by["int4:g32@gptq"].output < by["int3:g32@gptq"].output
        assert by["int4:g32@gptq"].loss < by["int3:g32@gptq"].loss
    assert table.probe == "int3:g32@gptq" == probe_candidate(candidates[units[0].label]).key
    assert all(table.get(u, c).measured for u in units for c in candidates[u.label] if c.key == table.probe)
    predicted = [table.get(u, c) for u in units for c in candidates[u.label]
                 if not table.get(u, c).measured and c.key != "fp16@rtn"]
    assert predicted and all(e.loss > 0 for e in predicted)
    assert table.prediction_error is not None and np.isfinite(table.prediction_error)


def test_second_measurement_reads_the_cache(llama, llama_table):
    units, candidates, table, cache = llama_table
    again = measure_sensitivity(llama, units, candidates, FAST, cache, progress=False)
    assert again.measured == 0 and again.cached == len({c.key for cs in candidates.values() for c in cs})
    assert again.errors == table.errors


@pytest.fixture(scope="module")
def llama_inputs(llama, llama_table, tmp_path_factory):
    profile_yaml = tmp_path_factory.mktemp("prof") / "tiny-gpu.yaml"
    profile_yaml.write_text(TINY_PROFILE)
    profile = load_profile(profile_yaml)
    units, _, _, cache = llama_table
    settings = PlanSettings(sensitivity=FAST, context=64)
    return profile, settings, prepare(llama, profile, settings, cache, progress=False)


TINY_PROFILE = """
name: tiny-gpu
kind: gpu
description: a test device
memory_bytes: 1GB
usable_memory_fraction: 0.5
bandwidth_gbs: 100
peak_tops: {fp16: 10, int8: 20}
dispatch_us: 2
sparse24_speedup: 2
formats:
  fp16: {compute: fp16, native: true}
  int8: {compute: int8, native: true}
  int4:g32: {compute: fp16, native: false}
  int3:g32: {compute: fp16, native: false}
  2:4: {compute: fp16, native: true}
sources: {memory_bytes: t, bandwidth_gbs: t, peak_tops: t, dispatch_us: t, formats: t, sparse24_speedup: t}
"""


def test_plan_meets_a_memory_budget_with_least_loss(llama, llama_inputs):
    profile, settings, inputs = llama_inputs
    shape = model_shape(llama, inputs.units)
    full = sum(u.nbytes(parse_format("fp16")) for u in inputs.units) + shape.fixed_bytes
    budget = int(full * 0.45)
    plan = make_plan(llama, profile, inputs, Constraints(memory_bytes=budget), settings)
    assert plan.totals.weights_bytes <= budget
    assert set(plan.layers) == {r.name for r in llama.adapter.linears(llama.model)} | {"lm_head"}
    for unit in plan.units:  # fused layers share one format
        assert len({plan.layers[n].format for n in unit.layers}) == 1
    # no uniform format of at most this size predicts less loss
    for key, point in plan.frontier.uniform.items():
        if point.bytes <= budget:
            assert plan.totals.predicted_loss <= point.loss + 1e-12, key
    assert make_plan(llama, profile, inputs, Constraints(memory_bytes=budget), settings) == plan  # reproducible
    uniform = plan.frontier.uniform  # as `compress --format F` makes them, and with --include-head
    assert {"int8@rtn", "int8@rtn+head", "2:4@sparsegpt"} <= set(uniform) and "2:4@sparsegpt+head" not in uniform
    assert uniform["int8@rtn+head"].bytes < uniform["int8@rtn"].bytes


def test_infeasible_memory_names_the_smallest_possible(llama, llama_inputs):
    profile, settings, inputs = llama_inputs
    with pytest.raises(EdgecError, match=r"--memory cannot be met: the smallest possible is [0-9.]+ kB"):
        make_plan(llama, profile, inputs, Constraints(memory_bytes=1000), settings)


def test_default_plan_is_the_fastest_under_the_loss_bound(llama, llama_inputs):
    profile, settings, inputs = llama_inputs
    plan = make_plan(llama, profile, inputs, Constraints(), settings)
    assert plan.constraints.objective == "latency"
    assert plan.totals.predicted_loss <= 0.05
    tight = make_plan(llama, profile, inputs, Constraints(max_loss=plan.totals.predicted_loss / 4), settings)
    assert tight.totals.predicted_loss <= plan.totals.predicted_loss / 4
    assert tight.totals.decode_ms >= plan.totals.decode_ms


def test_plan_cli_writes_plan_and_plot_and_compress_applies_it(tiny_llama_dir, tmp_path):
    profile = tmp_path / "tiny-gpu.yaml"
    profile.write_text(TINY_PROFILE)
    plan_path = tmp_path / "plan.json"
    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    plan = cli_json("plan", "--device", str(profile), "--model", str(tiny_llama_dir), "--avg-bits", "5",
                    "--samples", "4", "-o", str(plan_path), env=env)
    assert json.loads(plan_path.read_text()) == plan
    assert (tmp_path / "plan.png").stat().st_size > 10_000
    assert plan["totals"]["avg_bits"] <= 5
    run = plan["run"]
    assert run["sensitivity_seconds"] > 0 and run["candidates_measured"] > 0 and run["candidates_cached"] == 0
    assert run["compute_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    again = run_cli("plan", "--device", str(profile), "--model", str(tiny_llama_dir), "--avg-bits", "5",
                    "--samples", "4", "-o", str(tmp_path / "again.json"), env=env)
    assert f"0 candidates (format and method) measured now, {run['candidates_measured']} read from the cache" in again.stdout
    assert "expected for" not in again.stderr  # nothing left to measure, nothing to announce
    fresh = run_cli("plan", "--device", str(profile), "--model", str(tiny_llama_dir), "--avg-bits", "5",
                    "--samples", "4", "--no-cache", "-o", str(tmp_path / "fresh.json"), env=env)
    expected = re.search(r"sensitivity: about \S+ expected for ([0-9,]+) \(unit, candidate\) tasks", fresh.stderr)
    assert expected, fresh.stderr
    assert int(expected.group(1).replace(",", "")) == sum(len(cands) for cands in plan["candidates"].values())
    assert json.loads((tmp_path / "again.json").read_text())["run"]["candidates_cached"] == run["candidates_measured"]
    out = tmp_path / "compressed"
    done = run_cli("compress", "--model", str(tiny_llama_dir), "--plan", str(plan_path), "--samples", "4",
                   "--seq-len", "128", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert re.fullmatch(r"expected: about \d+s and [0-9.]+ [kMG]?B of memory on the host", first), first
    manifest = json.loads((out / "edgec-compression.json").read_text())
    got = {name: (layer["format"], layer["method"]) for name, layer in manifest["layers"].items()}
    assert got == {name: (layer["format"], layer["method"]) for name, layer in plan["layers"].items()}


def test_plan_cli_refusals(tiny_llama_dir, tiny_gpt2_dir, tmp_path):
    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    done = run_cli("plan", "--device", "no-such-device", "--model", str(tiny_llama_dir), "-o", str(tmp_path / "p.json"))
    assert done.returncode == 2 and "no-such-device" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    for verb in ("plan", "compress", "eval"):
        extra = {"plan": ["--device", "host", "-o", str(tmp_path / "p.json")],
                 "compress": ["--format", "int8", "-o", str(tmp_path / "c")], "eval": []}[verb]
        done = run_cli(verb, "--model", str(tiny_llama_dir), "--compute-device", "tpu", *extra)
        assert done.returncode == 2 and "--compute-device 'tpu'" in done.stderr, (verb, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("plan", "--device", "raspberry-pi-5", "--model", str(tiny_llama_dir), "--memory", "10kB",
                   "--samples", "4", "-o", str(tmp_path / "p.json"), env=env)
    assert done.returncode == 2 and "smallest possible is" in done.stderr
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "p.png").exists()
    plan = tmp_path / "plan.json"
    assert run_cli("plan", "--device", "raspberry-pi-5", "--model", str(tiny_llama_dir), "--samples", "4",
                   "-o", str(plan), env=env).returncode == 0
    done = run_cli("compress", "--model", str(tiny_gpt2_dir), "--plan", str(plan), "-o", str(tmp_path / "c"))
    assert done.returncode == 2 and "was made for" in done.stderr and not (tmp_path / "c").exists()
    plan.write_text("{not json")
    done = run_cli("compress", "--model", str(tiny_llama_dir), "--plan", str(plan), "-o", str(tmp_path / "c"))
    assert done.returncode == 2 and "not a plan file" in done.stderr


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir"])
def test_output_loss_reference_is_the_models_own_output(family, request):
    """The loss runs the model block by block from captured arguments: it must reproduce the model's own
    logits (Gemma 3: each attention kind's mask and rotary tables, the soft-capped logits)."""
    from edgec.calibration.windows import calibration_windows
    from edgec.planner.output_loss import OutputLoss

    loaded = load_model(request.getfixturevalue(family))
    ids, _ = calibration_windows(loaded.tokenizer, 2, 32)
    with torch.no_grad():  # as measure_sensitivity runs it
        loss = OutputLoss(loaded, ids, torch.device("cpu"))
        expected = loaded.model(input_ids=ids, use_cache=False).logits.float()
        assert loss.changed_block(0) == pytest.approx(0, abs=1e-9)
    reference = torch.cat(loss.reference, dim=1).reshape(expected.shape)  # vocabulary bands, positions flattened
    torch.testing.assert_close(reference, expected, rtol=1e-5, atol=1e-5)


def test_encoder_plans_on_cosine_distance(tiny_bert_dir, tmp_path):
    bert = load_model(tiny_bert_dir)
    units = planning_units(bert)
    assert not any(u.is_head for u in units)
    candidates = {u.label: unit_candidates(u, FORMATS, "auto") for u in units}
    table = measure_sensitivity(bert, units, candidates, FAST, None, progress=False)
    assert table.loss_name == "cosine distance"
    u = units[0]
    by = {c.key: table.get(u, c).loss for c in candidates[u.label]}
    assert 0 < by["int8@rtn"] < by["int3:g32@gptq"] < 1


def _broken_plans(plan: dict) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """Plans with one thing wrong, and what the refusal must name."""
    cases: dict[str, tuple[dict, tuple[str, ...]]] = {}
    for key in ("totals", "device", "units", "settings", "model", "layers"):
        broken = copy.deepcopy(plan)
        del broken[key]
        cases[f"no {key}"] = (broken, (f"field {key}: Field required",))
    broken = copy.deepcopy(plan)
    broken["totals"] = "x"
    cases["totals a string"] = (broken, ("field totals: Input should be a mapping",))
    broken = copy.deepcopy(plan)
    broken["layers"] = {}
    cases["no layers"] = (broken, ("compresses nothing",))
    first = next(iter(plan["layers"]))
    for what, value, named in (("shape", [1, 1], "shape"), ("shape", "x", "shape"), ("format", "int5:g128", "int5"),
                               ("method", "magic", "magic")):
        broken = copy.deepcopy(plan)
        broken["layers"][first][what] = value
        cases[f"layer {what} {value}"] = (broken, (first, named))
    return cases


def test_incomplete_or_inconsistent_plans_are_refused_naming_the_field(llama, llama_inputs, tmp_path):
    from edgec.planner.plan_file import plan_request, read_plan

    profile, settings, inputs = llama_inputs
    plan = plan_json(make_plan(llama, profile, inputs, Constraints(), settings))
    path = tmp_path / "plan.json"
    for case, (broken, named) in _broken_plans(plan).items():
        path.write_text(json.dumps(broken))
        with pytest.raises(EdgecError) as info:
            plan_request(read_plan(path), llama, path)
        assert str(path) in str(info.value) and all(n in str(info.value) for n in named), (case, str(info.value))
    first = next(iter(plan["layers"]))
    for case, change in (("a layer left out", lambda p: p["layers"].pop(first)),
                         ("a layer of another shape", lambda p: p["layers"][first].update(shape=[64, 32])),
                         ("a layer the model lacks", lambda p: p["layers"].update(nope=dict(plan["layers"][first])))):
        broken = copy.deepcopy(plan)
        change(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(EdgecError) as info:
            plan_request(read_plan(path), llama, path)
        assert re.search("leaves out 1 of|shape|not a quantizable linear", str(info.value)), case
    path.write_text(json.dumps(plan))
    assert set(plan_request(read_plan(path), llama, path)) == set(plan["layers"])


def test_plan_file_schema_round_trip_version_and_field_errors(llama, llama_inputs, tmp_path):
    from edgec.planner.plan_file import read_plan

    profile, settings, inputs = llama_inputs
    plan = make_plan(llama, profile, inputs, Constraints(), settings)
    path = tmp_path / "plan.json"
    text = json.dumps(plan_json(plan), indent=1)
    path.write_text(text + "\n")
    again = read_plan(path)
    assert again == plan and json.dumps(plan_json(again), indent=1) == text  # read back: the same plan, the same JSON
    assert plan.edgec_plan == 1 and json.loads(text)["edgec_plan"] == 1
    first = next(iter(plan.layers))

    def refusal(change) -> str:
        broken = plan_json(plan)
        change(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(EdgecError) as info:
            read_plan(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        return message

    without_version = plan_json(plan)
    del without_version["edgec_plan"]  # read as version 1
    path.write_text(json.dumps(without_version))
    assert read_plan(path).edgec_plan == 1
    assert "plan version 2 is not supported" in refusal(lambda p: p.update(edgec_plan=2))
    assert "field edgec_plan: Input should be a valid integer" in refusal(lambda p: p.update(edgec_plan="1"))
    assert refusal(lambda p: p["totals"].update(weights_bytes="12")).endswith(
        "field totals.weights_bytes: Input should be a valid integer")
    assert refusal(lambda p: p["totals"].update(decode_ms=float("inf"))).endswith(
        "field totals.decode_ms: Input should be a finite number")
    assert refusal(lambda p: p["settings"].update(fuse=1)).endswith("field settings.fuse: Input should be a valid boolean")
    assert refusal(lambda p: p["units"][0].update(loss=True)).endswith("field units.0.loss: Input should be a valid number")
    assert refusal(lambda p: p["constraints"]["applied"].update({"--memory": "80MB"})).endswith(
        "field constraints.applied.--memory: Input should be a valid number")
    assert refusal(lambda p: p.update(totls=p.pop("totals"))).endswith("field totls: unknown field; did you mean 'totals'?")
    assert refusal(lambda p: p["layers"][first].update(fromat="int8")).endswith(
        f"field layers[{first!r}].fromat: unknown field; did you mean 'format'?")
    assert "field frontier.uniform" in refusal(lambda p: p["frontier"]["uniform"][next(iter(p["frontier"]["uniform"]))]
                                               .update(extra=1))


def test_compress_and_export_refuse_a_bad_plan_or_format_before_loading_the_model(tmp_path):
    missing_model = str(tmp_path / "no-such-model")  # were the model loaded first, the error would name it
    bad = tmp_path / "plan.json"
    bad.write_text('{"edgec_plan": 1, "model": {}, "layers": {}}')
    for args, named in ((["compress", "--format", "int5:g128", "-o", str(tmp_path / "c")], "int5:g128"),
                        (["compress", "--format", "int4:g32", "--head-format", "int9", "-o", str(tmp_path / "c")], "int9"),
                        (["compress", "--plan", str(bad), "-o", str(tmp_path / "c")], str(bad)),
                        (["export", "--plan", str(bad), "--to", "edgec", "-o", str(tmp_path / "e")], str(bad))):
        done = run_cli(*args, "--model", missing_model)
        assert done.returncode == 2 and named in done.stderr and "no-such-model" not in done.stderr, done.stderr
        assert done.stderr.startswith("edgec: error: ") and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def _paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices), the value itself first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield from _paths(item, (*prefix, index))


def _kind(value) -> str:
    """A JSON value's kind, integers and floats alike ("number")."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_fuzzed_plans_are_refused_with_edgec_errors_only(llama, llama_inputs, tmp_path):
    """Drop, retype or perturb fields of a real plan anywhere in its tree: the plan is refused with an
    EdgecError before the model is needed, or by the model check, or it is a plan compress can follow.
    A value of another kind (a string for a number, a list for a mapping, ...) is the schema's to refuse."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from edgec.planner.plan_file import plan_request, read_plan

    profile, settings_, inputs = llama_inputs
    plan = plan_json(make_plan(llama, profile, inputs, Constraints(), settings_))
    paths = [p for p in _paths(plan) if p]
    odd = st.sampled_from([None, 0, -1, 1.5, "x", "int5:g128", [], {}, [1, 1], True, 10**30])
    path = tmp_path / "plan.json"

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(where=st.sampled_from(paths), drop=st.booleans(), value=odd)
    def check(where, drop, value):
        broken = copy.deepcopy(plan)
        parent = broken
        for key in where[:-1]:
            parent = parent[key]
        retyped = not (drop and isinstance(parent, dict)) and None not in (value, parent[where[-1]]) \
            and _kind(value) != _kind(parent[where[-1]])
        if drop and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = value
        path.write_text(json.dumps(broken))
        try:
            request = plan_request(read_plan(path), llama, path)
        except EdgecError as exc:
            assert str(path) in str(exc) or "was made for" in str(exc), exc
            assert not retyped or f"{path}: field " in str(exc), exc
            return
        assert not retyped, (where, value)
        assert {r.name for r in llama.adapter.linears(llama.model)} <= set(request)  # accepted: every block linear
        for name, config in request.items():  # and each layer as the model has it
            assert tuple(broken["layers"][name]["shape"]) == tuple(
                next(r for r in llama.adapter.linears(llama.model) + [llama.adapter.head(llama.model)]
                     if r.name == name).shape)
            config.format.check_shape(tuple(broken["layers"][name]["shape"]))

    check()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_head_errors_are_those_of_the_model_with_its_head_rounded(tied, tiny_llama_dir, tmp_path, monkeypatch):
    """The head is measured a band of rows at a time (several bands here); untied, from the blocks' cached
    outputs; tied, with the embedding reading the rounded rows too: both against a plain full forward."""
    from conftest import _FAMILY_SIZES, save_tiny_decoder
    from transformers import LlamaConfig

    from edgec.calibration import vocab_bands
    from edgec.planner import sensitivity_tasks
    from edgec.planner.units import Candidate

    path = tiny_llama_dir if tied else save_tiny_decoder(LlamaConfig(**{**_FAMILY_SIZES, "tie_word_embeddings": False}),
                                                         tmp_path / "untied")
    loaded = load_model(path)
    monkeypatch.setattr(vocab_bands, "LOGITS_PER_BAND", 2 * 64 * 13)  # the loss windows' 128 positions, 13 tokens a band
    monkeypatch.setattr(sensitivity_tasks, "SQUARES_CHUNK", 64 * 7)  # the tensor error 7 rows at a time
    unit = planning_units(loaded)[-1]
    cand = Candidate(parse_format("int4:g32"), "rtn")
    table = measure_sensitivity(loaded, [unit], {unit.label: [cand]}, FAST, None, progress=False)
    head = loaded.adapter.head(loaded.model).module
    assert (head.weight is loaded.model.get_input_embeddings().weight) == tied
    w = head.weight.detach().clone()
    q = torch.from_numpy(cand.format.fake_quantize(w.numpy()))
    ids, _ = calibration_windows(loaded.tokenizer, FAST.loss_samples, FAST.loss_seq_len)
    with torch.no_grad():
        reference = torch.log_softmax(loaded.model(input_ids=ids).logits.double(), -1)
        head.weight.data = q
        rounded = torch.log_softmax(loaded.model(input_ids=ids).logits.double(), -1)
        head.weight.data = w
    errors = table.get(unit, cand)
    assert errors.measured and errors.output is None
    assert errors.tensor == pytest.approx(float(((w - q) ** 2).sum() / (w**2).sum()), rel=1e-6)
    assert errors.loss == pytest.approx(float((reference.exp() * (reference - rounded)).sum(-1).mean()), rel=1e-4)
    assert torch.equal(head.weight, w)
