"""Compression passes: golden comparisons on tiny shapes, and every pass on tiny models of every family."""

import copy
import functools
import itertools
import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.numpy import load_file

from edgec.assignment import uniform_assignment
from edgec.calibration.sequential import run_sequential
from edgec.calibration.windows import calibration_windows
from edgec.compress import CalibrationSettings, compress
from edgec.compressed_io import MANIFEST, PACKED, SPILL, save_compressed
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.models.loading import load_model
from edgec.passes import LayerConfig
from edgec.passes.obs_math import PruneSpec, obs_sweep
from edgec.passes.pruning_math import keep_nm, keep_top, wanda_score

CAL = CalibrationSettings(samples=4, seq_len=32, batch_size=2)


def _gptq_direct(w, h, fmt, damp):
    """GPTQ's equations in float64, one column at a time, with the explicit OBS inverse update."""
    w = w.astype(np.float64).copy()
    k = w.shape[1]
    h = h.astype(np.float64).copy()
    h[np.diag_indices(k)] += damp * np.mean(np.diag(h))
    h_inv = np.linalg.inv(h)
    g = fmt.group_size(k)
    codes = np.zeros(w.shape, dtype=np.int64)
    for i in range(k):
        if i % g == 0:
            params = {p: v[:, None] for p, v in fmt.fit(w[:, i : i + g].astype(np.float32)).items()}
        q = fmt.round(w[:, i : i + 1].astype(np.float32), params)
        codes[:, i] = q[:, 0]
        err = (w[:, i] - fmt.scale(q, params)[:, 0]) / h_inv[i, i]
        w[:, i:] -= np.outer(err, h_inv[i, i:])
        h_inv -= np.outer(h_inv[:, i], h_inv[i, :]) / h_inv[i, i]
    return codes


def _problem(n, k, seed, tokens=256):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, k)) * rng.uniform(0.2, 3, k)  # uneven input scales
    x[:, 1] += 0.8 * x[:, 0]  # correlated inputs
    return (rng.standard_normal((n, k)) * 0.1).astype(np.float32), x.T @ x


@pytest.mark.parametrize("text", ["int4:g32", "int3:g32:asym", "int8", "nf4:g32", "fp8"])
def test_gptq_matches_a_float64_implementation_of_its_equations(text):
    fmt = parse_format(text)
    w, h = _problem(8, 64, seed=1)
    ours = obs_sweep(w, h, quantizer=fmt, block_size=32, damp=0.01)
    expected = _gptq_direct(w, h, fmt, 0.01)
    assert (ours.codes.astype(np.int64) != expected).mean() < 0.01  # float32 vs float64 can flip a rare tie
    np.testing.assert_array_equal(fmt.decode({"codes": ours.codes, **ours.params}, w.shape), ours.weight)


def test_inverse_hessian_factor_is_the_upper_cholesky_factor_of_the_damped_inverse():
    from edgec.passes.obs_math import inverse_hessian_factor

    _, h = _problem(4, 40, seed=8)
    h[7, :] = h[:, 7] = 0  # a dead input
    u = inverse_hessian_factor(h, 0.01)
    damped = h.copy()
    damped[7, 7] = 1.0
    damped[np.diag_indices(40)] += 0.01 * np.mean(np.diag(damped))
    np.testing.assert_array_equal(np.tril(u, -1), 0)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(damped), rtol=1e-9, atol=1e-12)
    assert (np.diag(u) > 0).all()


def test_gptq_with_uncorrelated_equal_inputs_is_round_to_nearest():
    fmt = parse_format("int4:g32")
    w = np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32)
    result = obs_sweep(w, np.eye(64), quantizer=fmt, damp=0.01)
    np.testing.assert_array_equal(result.codes, fmt.encode(w)["codes"])


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_lowers_output_error_below_rtn(act_order):
    fmt = parse_format("int3:g32")
    w, h = _problem(16, 128, seed=2)
    error = lambda q: np.einsum("ij,jk,ik->", w - q, h, w - q)  # noqa: E731
    gptq = obs_sweep(w, h, quantizer=fmt, act_order=act_order).weight
    assert error(gptq) < 0.8 * error(fmt.fake_quantize(w))


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_clip_search_lowers_output_error_below_min_max_fit(act_order):
    fmt = parse_format("int3:g32")
    w, h = _problem(32, 128, seed=5)
    w[:, ::9] *= 6  # rare large weights that a min-max fit spends its grid on
    error = lambda q: np.einsum("ij,jk,ik->", w - q, h, w - q)  # noqa: E731
    clipped = obs_sweep(w, h, quantizer=fmt, act_order=act_order, clip=True)
    plain = obs_sweep(w, h, quantizer=fmt, act_order=act_order)
    assert error(clipped.weight) < 0.95 * error(plain.weight)
    np.testing.assert_array_equal(fmt.decode({"codes": clipped.codes, **clipped.params}, w.shape), clipped.weight)



def test_clip_search_by_bands_of_rows_is_the_whole_search(monkeypatch):
    """Each row picks its own ratios, so searching a few rows at a time (K = 100: a last group of 4) changes
    nothing; each choice is the ratio of least output error among the candidates."""
    from edgec.passes import clip_math

    fmt = parse_format("int4:g32:asym")
    w, h = _problem(13, 100, seed=6)
    whole = clip_math.clipped_params(w, h, fmt)
    monkeypatch.setattr(clip_math, "CLIP_BAND_ELEMENTS", 3 * 128)  # bands of 3 rows
    banded = clip_math.clipped_params(w, h, fmt)
    assert whole.keys() == banded.keys() and all(np.array_equal(whole[p], banded[p]) for p in whole)
    row, group = 4, 3  # the padded group: columns 96..99
    span = slice(96, 100)
    errors = []
    for r in clip_math.CLIP_RATIOS:
        params = fmt.fit(np.stack([w[row : row + 1, span].min(-1), w[row : row + 1, span].max(-1)], -1) * r)
        q = fmt.scale(fmt.round(w[row : row + 1, span], params), params)
        d = (q - w[row : row + 1, span])[0]
        errors.append((d @ h[span, span] @ d, {p: v[0] for p, v in params.items()}))
    best = min(errors, key=lambda e: e[0])[1]
    assert all(np.isclose(banded[p][row, group], best[p]) for p in best)

def test_gptq_on_linears_sharing_an_input_equals_separate_sweeps():
    from edgec.calibration.stats import InputStats
    from edgec.passes import GPTQ

    fmt = parse_format("int4:g32")
    rng = np.random.default_rng(6)
    weights = [(rng.standard_normal((n, 64)) * 0.1).astype(np.float32) for n in (8, 4, 4)]
    stats = InputStats(64)
    stats.add(torch.from_numpy(rng.standard_normal((200, 64)).astype(np.float32)))
    cal = type("Cal", (), {"stats": {"q": stats, "k": stats, "v": stats}})()
    config = LayerConfig(fmt, "gptq")
    together = GPTQ().compress_shared(weights, config, cal, ["q", "k", "v"])
    for w, layer, done in zip(weights, ["q", "k", "v"], together):
        alone = GPTQ().compress(w, config, cal, layer)
        np.testing.assert_array_equal(done.encoded["codes"], alone.encoded["codes"])
        np.testing.assert_array_equal(done.encoded["scale"], alone.encoded["scale"])
        np.testing.assert_allclose(done.weight, alone.weight, atol=1e-6)


def _brute_force_nm(w, h_diag, n=2, m=4):
    """Best 2:4 mask per row for a diagonal Hessian: minimise Σ_pruned w² H_jj."""
    best = np.zeros_like(w, dtype=bool)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], m):
            options = itertools.combinations(range(m), m - n)
            kept = min(options, key=lambda c: sum(w[r, g + j] ** 2 * h_diag[g + j] for j in range(m) if j not in c))
            best[r, [g + j for j in kept]] = True
    return best


def test_sparsegpt_and_wanda_masks_are_optimal_for_uncorrelated_inputs():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 16)).astype(np.float32)
    h_diag = rng.uniform(0.1, 10, 16)
    best = _brute_force_nm(w, h_diag)
    sparsegpt = obs_sweep(w, np.diag(h_diag), prune=PruneSpec(n=2, m=4), damp=1e-9)
    np.testing.assert_array_equal(sparsegpt.keep, best)
    np.testing.assert_array_equal(keep_nm(wanda_score(w, np.sqrt(h_diag)), 2, 4), best)
    np.testing.assert_allclose(sparsegpt.weight, w * best, atol=1e-5)  # nothing to reconstruct


def test_wanda_unstructured_mask_is_per_row_brute_force():
    rng = np.random.default_rng(4)
    score = rng.uniform(size=(3, 8))
    keep = keep_top(score, 0.5, per_row=True)
    for r in range(3):
        best = max(itertools.combinations(range(8), 4), key=lambda c: score[r, list(c)].sum())
        assert set(np.nonzero(keep[r])[0]) == set(best)


def test_sparsegpt_reconstruction_beats_magnitude_on_correlated_inputs():
    w, h = _problem(16, 128, seed=5)
    error = lambda q: np.einsum("ij,jk,ik->", w - q, h, w - q)  # noqa: E731
    sgpt = obs_sweep(w, h, prune=PruneSpec(sparsity=0.5)).weight
    assert (sgpt == 0).mean() == pytest.approx(0.5, abs=0.01)
    magnitude = w * keep_top(np.abs(w), 0.5, per_row=False)
    assert error(sgpt) < error(magnitude)


def test_joint_2to4_quantization_keeps_two_of_four_on_the_grid():
    fmt = parse_format("2:4+int4:g32")
    w, h = _problem(8, 128, seed=6)
    result = obs_sweep(w, h, quantizer=fmt.inner, prune=PruneSpec(n=2, m=4))
    assert (result.keep.reshape(8, 32, 4).sum(-1) == 2).all()
    kept = result.weight[result.keep].reshape(8, 64)
    enc = {"codes": result.codes[result.keep].reshape(8, 64), **result.params}
    np.testing.assert_array_equal(fmt.inner.decode(enc, (8, 64)), kept)


FAMILY_DIRS = ["tiny_llama_dir", "tiny_phi3_dir", "tiny_gpt2_dir", "tiny_bert_dir", "tiny_gemma3_dir"]
METHOD_FORMATS = [("rtn", "int4:g32"), ("gptq", "int4:g32"), ("gptq", "nf4:g32"), ("awq", "int4:g32:asym"),
                  ("smoothquant", "int8"), ("magnitude", "2:4"), ("wanda", "2:4+int8"), ("sparsegpt", "2:4+int4:g32"),
                  ("sparsegpt", "fp16")]


@pytest.mark.parametrize("method, text", METHOD_FORMATS)
@pytest.mark.parametrize("family", FAMILY_DIRS)
def test_every_pass_on_tiny_models(family, method, text, request):
    loaded = load_model(request.getfixturevalue(family))
    torch.set_num_threads(1)
    fmt = parse_format(text)
    sparsity = 0.5 if text == "fp16" else 0.0
    req = {n: LayerConfig(f, method, sparsity) for n, f in uniform_assignment(loaded.model, loaded.adapter, fmt).items()}
    result = compress(loaded, req, CAL, progress=False)
    assert list(result.layers) == list(req)
    refs = {r.name: r for r in loaded.adapter.linears(loaded.model)}
    for name, layer in result.layers.items():
        decoded = fmt.dequantize(layer.packed, refs[name].shape)
        if layer.input_scale is not None:  # an unfolded AWQ scale: the layer computes Q(W·s)/s
            decoded = decoded / layer.input_scale[None, :]
        np.testing.assert_allclose(decoded, refs[name].weight().numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
        if sparsity:
            assert (decoded == 0).mean() == pytest.approx(0.5, abs=0.02)
    assert (result.calibration_tokens > 0) == (method not in ("rtn", "magnitude"))


def test_bad_combinations_are_refused_before_any_work(tiny_llama_dir):
    loaded = load_model(tiny_llama_dir)
    before = copy.deepcopy(loaded.model.state_dict())
    names = [r.name for r in loaded.adapter.linears(loaded.model)]
    cases = [
        ({names[-1]: LayerConfig(parse_format("2:4"), "gptq")}, "gptq cannot produce 2:4"),
        ({names[0]: LayerConfig(parse_format("int4:g32"), "wanda")}, "wanda cannot produce int4:g32"),
        ({names[0]: LayerConfig(parse_format("fp16"), "sparsegpt")}, "sparsity"),
        ({"model.layers.7.mlp.up_proj": LayerConfig(parse_format("int8"), "rtn")}, "model.layers.7.mlp.up_proj"),
        ({names[0]: LayerConfig(parse_format("int8"), "bogus")}, "unknown method 'bogus'"),
        ({names[0]: LayerConfig(parse_format("int4:g32"), "awq")}, "share an input; awq needs all of them on awq"),
    ]
    for req, message in cases:
        with pytest.raises(EdgecError, match=message):
            compress(loaded, {names[1]: LayerConfig(parse_format("int8"), "gptq"), **req}, CAL, progress=False)
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())


def test_sequential_pipeline_feeds_each_block_the_compressed_outputs(tiny_llama_dir):
    """Block 1's statistics are those of the inputs produced by the already-compressed block 0."""
    loaded = load_model(tiny_llama_dir)
    ids, _ = calibration_windows(loaded.tokenizer, 2, 16)
    seen = {}

    def zero_block0(cal):
        if cal.index == 0:
            for ref in cal.linears:
                ref.set_weight(torch.zeros(ref.shape))
        seen[cal.index] = cal.inputs[0].clone()

    run_sequential(loaded.model, loaded.adapter, ids, zero_block0, batch_size=2, progress=False)
    with torch.no_grad():
        embedded = loaded.model.model.embed_tokens(ids)
    torch.testing.assert_close(seen[0], embedded)
    torch.testing.assert_close(seen[1], embedded)  # a zeroed block adds nothing to the residual stream


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir"])
def test_sequential_pipeline_gives_each_block_the_models_own_inputs(family, request):
    """Left uncompressed, every block sees what the model's forward passes it: Gemma 3's global layers get
    their own rotary tables and mask, not those of the sliding layer before them."""
    loaded = load_model(request.getfixturevalue(family))
    ids, _ = calibration_windows(loaded.tokenizer, 2, 16)
    seen = {}
    run_sequential(loaded.model, loaded.adapter, ids, lambda cal: seen.setdefault(cal.index, cal.inputs[0].clone()),
                   batch_size=2, progress=False)
    blocks = loaded.adapter.blocks(loaded.model)
    real = {}

    def record(i, module, args, kwargs):
        real[i] = (args[0] if args else kwargs["hidden_states"]).clone()

    handles = [block.register_forward_pre_hook(functools.partial(record, i), with_kwargs=True)
               for i, block in enumerate(blocks)]
    with torch.no_grad():
        loaded.model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    for i in range(len(blocks)):
        torch.testing.assert_close(seen[i], real[i], rtol=1e-5, atol=1e-5, msg=f"block {i}")


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gpt2_dir", "tiny_bert_dir"])
def test_statistics_stop_early_but_see_every_linear_input(family, request):
    """Batches after the first stop after the last linear's input; the statistics equal a full run's."""
    loaded = load_model(request.getfixturevalue(family))
    ids, _ = calibration_windows(loaded.tokenizer, 6, 16)
    refs = [ref for ref in loaded.adapter.linears(loaded.model) if ref.block == 0]
    seen = {}
    run_sequential(loaded.model, loaded.adapter, ids, lambda cal: seen.setdefault(cal.index, cal.stats),
                   batch_size=2, progress=False)
    expected = {ref.name: torch.zeros(ref.shape[1], ref.shape[1], dtype=torch.float64) for ref in refs}

    def accumulate(name, x):
        x = x.reshape(-1, x.shape[-1]).double()
        expected[name] += x.t() @ x

    handles = [ref.module.register_forward_pre_hook(lambda m, args, n=ref.name: accumulate(n, args[0])) for ref in refs]
    with torch.no_grad():
        for start in range(0, 6, 2):
            loaded.model(input_ids=ids[start : start + 2])
    for h in handles:
        h.remove()
    for ref in refs:
        torch.testing.assert_close(seen[0][ref.name].hessian, expected[ref.name].float(), rtol=1e-5, atol=1e-4)
        assert seen[0][ref.name].tokens == ids.numel()


def test_compress_writes_a_folder_eval_can_read(tiny_llama_dir, tmp_path):
    out = tmp_path / "out"
    done = run_cli("compress", "--model", str(tiny_llama_dir), "--format", "2:4+int4:g32", "--method", "sparsegpt",
                   "--samples", "4", "--seq-len", "32", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "calibrated on 128 of the" in done.stdout and "tokens of Sense and Sensibility" in done.stdout
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["calibration"]["tokens"] == 128
    assert not (out / SPILL).exists() and not list(tmp_path.glob(".out*"))  # spill and temporary both gone
    assert {v["format"] for v in manifest["layers"].values()} == {"2:4+int4:g32"}
    packed = load_file(str(out / PACKED))
    name = next(iter(manifest["layers"]))
    fmt = parse_format("2:4+int4:g32")
    reloaded = load_model(out)
    weight = reloaded.model.get_submodule(name).weight.detach().numpy()
    buffers = {b.name: packed[f"{name}::{b.name}"] for b in fmt.buffers(weight.shape)}
    np.testing.assert_array_equal(fmt.dequantize(buffers, weight.shape), weight)
    again = run_cli("compress", "--model", str(tiny_llama_dir), "--format", "int8", "-o", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_spilled_results_are_the_results_held_in_memory(tiny_llama_dir, tmp_path):
    fmt = parse_format("int4:g32:asym")
    results = []
    for spill in (None, tmp_path / "spill"):
        loaded = load_model(tiny_llama_dir)
        request = {n: LayerConfig(fmt, "gptq") for n in uniform_assignment(loaded.model, loaded.adapter, fmt)}
        results.append(compress(loaded, request, CAL, progress=False, spill=spill))
    held, spilled = results
    assert len(list((tmp_path / "spill").glob("*.npy"))) == sum(len(r.packed) for r in held.layers.values())
    for name, layer in held.layers.items():
        for buffer, array in layer.packed.items():
            mapped = spilled.layers[name].packed[buffer]
            assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
            np.testing.assert_array_equal(mapped, array)


def test_failed_compress_leaves_no_output(tiny_llama_dir, tmp_path):
    done = run_cli("compress", "--model", str(tiny_llama_dir), "--format", "int4:g32", "--method", "wanda",
                   "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "wanda cannot produce int4:g32" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_phi3_dir", "tiny_gpt2_dir", "tiny_gemma3_dir"])
@pytest.mark.parametrize("method, text", [("awq", "int3:g32"), ("smoothquant", "int8")])
def test_scale_folding_leaves_the_float_model_unchanged(family, method, text, request):
    """Run AWQ's / SmoothQuant's block preparation (scale search and folding) but skip quantization:
    the model must compute the same outputs (Gemma's norms scale by 1 + weight: the fold must keep the 1)."""
    from edgec.passes import PASSES

    loaded = load_model(request.getfixturevalue(family))
    original = copy.deepcopy(loaded.model)
    fmt = parse_format(text)
    instance = PASSES[method]()
    ids, _ = calibration_windows(loaded.tokenizer, 4, 32)
    req = {n: LayerConfig(fmt, method) for n in uniform_assignment(loaded.model, loaded.adapter, fmt)}
    changed = []

    def fold_only(cal):
        before = {r.name: r.weight().clone() for r in cal.linears}
        instance.prepare_block(cal, {r.name: req[r.name] for r in cal.linears})
        changed.append(any(not torch.equal(before[r.name], r.weight()) for r in cal.linears))

    run_sequential(loaded.model, loaded.adapter, ids, fold_only, batch_size=2, progress=False)
    assert all(changed)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids[:2]).logits, original(ids[:2]).logits, rtol=1e-4, atol=1e-4)


def test_awq_explicit_input_scale_is_recorded_and_applied(tiny_bert_dir, tmp_path):
    """BERT's post-norm inputs cannot take a folded scale: the layer stores Q(W·s) and the scale s."""
    loaded = load_model(tiny_bert_dir)
    fmt = parse_format("int4:g32")
    req = {n: LayerConfig(fmt, "awq") for n in uniform_assignment(loaded.model, loaded.adapter, fmt)}
    result = compress(loaded, req, CAL, progress=False)
    query = "encoder.layer.0.attention.self.query"
    layer = result.layers[query]
    assert layer.input_scale is not None and layer.input_scale.shape == (64,)
    assert result.layers["encoder.layer.0.attention.output.dense"].input_scale is None  # folded into value rows
    weight = loaded.model.get_submodule(query).weight.detach().numpy()
    np.testing.assert_allclose(fmt.dequantize(layer.packed, weight.shape) / layer.input_scale, weight, rtol=1e-5, atol=1e-7)


def test_awq_lowers_output_error_below_rtn():
    from edgec.passes.awq_math import search_scale
    from edgec.passes.clip_math import clipped_params

    fmt = parse_format("int3:g32")
    rng = np.random.default_rng(7)
    act = rng.uniform(0.05, 5, 128)  # a few strong input channels, as in LLMs
    x = rng.standard_normal((512, 128)) * act
    h = torch.from_numpy(x.T @ x)
    w = (rng.standard_normal((32, 128)) * 0.1).astype(np.float32)
    err = lambda q: np.einsum("ij,jk,ik->", w - q, h.numpy(), w - q)  # noqa: E731
    scale, alpha, errors = search_scale([w], h, torch.from_numpy(np.abs(x).mean(0)), [fmt])
    assert alpha > 0 and min(errors) < errors[0]  # α = 0 is plain RTN
    s = scale.numpy()
    hs = h / torch.outer(scale, scale).double()
    params = clipped_params(w * s, hs.numpy(), fmt)
    awq = fmt.decode(fmt.encode_with(w * s, params), w.shape) / s
    assert err(awq) < 0.9 * err(fmt.fake_quantize(w))


def test_smoothing_flattens_activation_outliers():
    from edgec.passes.smoothquant_math import smoothing_scale

    act = torch.tensor([0.5, 1.0, 40.0, 0.8])
    w = torch.tensor([[0.3, -0.2, 0.01, 0.5], [0.1, 0.4, -0.02, 0.2]])
    s = smoothing_scale(act, [w], alpha=0.5)
    smoothed_act, smoothed_w = act / s, (w * s).abs().amax(0)
    assert smoothed_act.max() / smoothed_act.min() < act.max() / act.min()
    torch.testing.assert_close(smoothed_act, smoothed_w)  # α = 0.5 balances both ranges per channel


@pytest.mark.parametrize("text", ["int8", "fp8"])
def test_smoothquant_w8a8_records_activation_scales_and_applies_them_on_load(tiny_llama_dir, tmp_path, text):
    from edgec.activation_quant import quantize_activation

    loaded = load_model(tiny_llama_dir)
    fmt = parse_format(text)
    req = {n: LayerConfig(fmt, "smoothquant") for n in uniform_assignment(loaded.model, loaded.adapter, fmt)}
    result = compress(loaded, req, CAL, progress=False)
    assert all(layer.act_scale > 0 for layer in result.layers.values())
    out = tmp_path / "w8a8"
    save_compressed(loaded, result, out, CAL)
    reloaded = load_model(out)
    name = next(iter(result.layers))
    captured = {}
    reloaded.model.get_submodule(name).register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    ids, _ = calibration_windows(loaded.tokenizer, 1, 16)
    with torch.no_grad():
        reloaded.model(ids)
    scale = float(result.layers[name].act_scale)
    torch.testing.assert_close(captured["x"], quantize_activation(captured["x"], scale, fmt))  # on the 8-bit grid
    assert captured["x"].unique().numel() <= 255


def test_smoothquant_refuses_4bit(tiny_llama_dir):
    loaded = load_model(tiny_llama_dir)
    name = loaded.adapter.linears(loaded.model)[0].name
    with pytest.raises(EdgecError, match="smoothquant cannot produce int4:g32"):
        compress(loaded, {name: LayerConfig(parse_format("int4:g32"), "smoothquant")}, CAL, progress=False)


@pytest.mark.parametrize("k", [7, 256, 300, 700])
def test_hessian_from_banded_upper_triangle_equals_the_full_product(k):
    from edgec.calibration.stats import InputStats

    stats = InputStats(k)
    batches = [torch.randn(3, 20, k) for _ in range(3)]
    for x in batches:
        stats.add(x)
    x = torch.cat(batches).reshape(-1, k).double()
    torch.testing.assert_close(stats.hessian, (x.t() @ x).float(), rtol=1e-5, atol=1e-3)
    assert stats.tokens == 180
    with pytest.raises(RuntimeError, match="final once their Hessian has been read"):
        stats.add(batches[0])


def test_no_clip_gives_gptq_min_max_group_ranges(tiny_llama_dir, tmp_path):
    """--no-clip reaches GPTQ: every group's scale is then its min-max fit, which the clip search only ever shrinks."""
    scales = {}
    for name, extra in (("clip", []), ("minmax", ["--no-clip"])):
        done = run_cli("compress", "--model", str(tiny_llama_dir), "--format", "int3:g32", "--method", "gptq",
                       "--samples", "4", "--seq-len", "32", "-o", str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stderr
        packed = load_file(str(tmp_path / name / PACKED))
        scales[name] = np.concatenate([v.ravel() for k, v in sorted(packed.items()) if k.endswith("::scale")])
    assert (scales["clip"] <= scales["minmax"]).all() and (scales["clip"] < scales["minmax"]).mean() > 0.2
