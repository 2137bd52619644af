"""`edgec run` and `edgec bench` on a tiny model's `.edgec` file."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from runtime_helpers import PROMPT, export

from edgec.runtime import load
from edgec.runtime.backends import available_backends


def test_run_streams_the_greedy_continuation(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    done = run_cli("run", str(path), "--prompt", PROMPT, "-n", "8", "--backend", "reference")
    assert done.returncode == 0, done.stderr
    expected = "".join(load(path, backend="reference").generate(PROMPT, 8))
    assert done.stdout == PROMPT + expected + "\n"


def test_bench_reports_speeds_and_memory_parts(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int4:g32")
    done = run_cli("bench", str(path), "--prompt-len", "16", "--gen", "8", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["prompt_tokens"] == 16 and result["generated_tokens"] == 8
    assert result["prefill_tokens_per_s"] > 0 and result["decode_tokens_per_s"] > 0
    assert result["cold_prefill_tokens_per_s"] > 0 and result["warmup_decode_steps"] == 4
    assert 0 < result["open_s"] < result["first_token_s"]
    assert result["kv_cache_bytes"] == 2 * 2 * (16 + 7) * 32 * 4  # 2 layers, 23 cached tokens (the warm cache), fp32
    assert result["peak_rss"] >= result["baseline_rss"] + result["weights_prepared_bytes"]
    text = run_cli("bench", str(path), "--prompt-len", "16", "--gen", "4").stdout
    assert "first token, cold" in text and "warm, after a prefill and 4 decode steps of warm-up:" in text
    assert "decode" in text and "tokens/s" in text and "peak RSS" in text


def test_run_refuses_a_missing_file_in_one_line(tmp_path):
    done = run_cli("run", str(tmp_path / "absent.edgec"), "--prompt", "x")
    assert done.returncode == 2 and "no such file" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bench_appends_to_a_profile_and_plans_follow_it(tiny_llama_dir, tmp_path):
    from conftest import cli_json

    from edgec.planner.profiles import PROFILE_DIR, load_profile

    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    profile = tmp_path / "x86-avx2-laptop.yaml"
    profile.write_text((PROFILE_DIR / "x86-avx2-laptop.yaml").read_text())
    plan_args = ("plan", "--device", str(profile), "-m", str(tiny_llama_dir), "--avg-bits", "6", "--samples", "4")
    first = cli_json(*plan_args, "-o", str(tmp_path / "plan.json"), env=env)
    assert first["device"]["calibration"] == {"decode": 1.0, "prefill": 1.0, "runs": 0}
    out = tmp_path / "m.edgec"
    done = run_cli("export", "-m", str(tiny_llama_dir), "--plan", str(tmp_path / "plan.json"), "--samples", "4",
                   "--seq-len", "64", "--to", "edgec", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr

    done = run_cli("bench", str(out), "--prompt-len", "8", "--gen", "4", "--append-profile", str(profile))
    assert done.returncode == 0, done.stderr
    assert "appended to" in done.stdout
    (run,) = load_profile(profile).runtime
    assert run.predicted_decode_ms == first["totals"]["decode_ms"] and run.measured_decode_ms > 0
    assert run.predicted_prefill_ms_per_token == first["totals"]["prefill_ms"] / first["settings"]["prompt_tokens"]

    second = cli_json(*plan_args, "-o", str(tmp_path / "plan2.json"), env=env)
    factor = run.measured_decode_ms / run.predicted_decode_ms
    assert second["device"]["calibration"]["runs"] == 1
    assert second["device"]["calibration"]["decode"] == factor
    assert second["layers"] == first["layers"]  # a budget on bytes: the same layers, priced in measured time
    assert abs(second["totals"]["decode_ms"] / (first["totals"]["decode_ms"] * factor) - 1) < 1e-9
    assert "scaled by 1 runtime run" in second["device"]["latency_model"]


def test_bench_refuses_to_append_without_a_plan_for_that_device(tiny_llama_dir, tmp_path):
    from edgec.planner.profiles import PROFILE_DIR

    profile = tmp_path / "x86-avx2-laptop.yaml"
    before = (PROFILE_DIR / "x86-avx2-laptop.yaml").read_text()
    profile.write_text(before)
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    done = run_cli("bench", str(path), "--gen", "2", "--append-profile", str(profile))
    assert done.returncode == 2 and "carries no plan" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert profile.read_text() == before


@pytest.mark.skipif(available_backends()["cpu"] is not None, reason="the CPU kernels were not built")
def test_threads_and_accuracy_reach_the_cpu_kernels(tiny_llama_dir, tmp_path):
    from edgec.kernels import cpu

    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int4:g32")
    before = cpu.threads()
    try:
        model = load(path, threads=1, accuracy="int8")
        assert cpu.threads() == 1 and model.backend.accuracy == "int8"
    finally:
        cpu.set_threads(before)
    done = run_cli("bench", str(path), "--prompt-len", "8", "--gen", "2", "--threads", "1", "--accuracy", "int8", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["threads"] == 1 and result["accuracy"] == "int8"
    done = run_cli("run", str(path), "-p", "x", "-n", "2", "--threads", "0")
    assert done.returncode == 2 and "--threads" in done.stderr


def test_the_api_refuses_bad_arguments_with_edgec_errors(tiny_llama_dir, tmp_path):
    from edgec.runtime import EdgecError

    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    for kwargs, named in (({"context": -5}, "context"), ({"context": 0}, "context"), ({"threads": 0}, "threads"),
                          ({"context": 2.5}, "context")):
        with pytest.raises(EdgecError, match=named):
            load(path, backend="reference", **kwargs)
    with pytest.raises(EdgecError, match="path"):
        load(None)
    model = load(path, backend="reference")
    with pytest.raises(EdgecError, match="integers"):
        model.forward([1.5])
    with pytest.raises(EdgecError, match=f"{path}.*0..{model.config.vocab_size - 1}"):
        model.forward([model.config.vocab_size])
    for kwargs, named in (({"temperature": float("nan")}, "temperature"), ({"temperature": float("inf")}, "temperature"),
                          ({"temperature": 1.0, "seed": -1}, "seed"), ({"top_p": float("nan")}, "top_p"),
                          ({"top_k": 1.5}, "top_k"), ({"max_new_tokens": 0}, "max_new_tokens"), ({"stop": [""]}, "stop"),
                          ({"stop": "x"}, "stop")):
        with pytest.raises(EdgecError, match=named):
            list(model.generate(PROMPT, **kwargs))


def test_run_says_when_the_context_will_fill(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    done = run_cli("run", str(path), "--prompt", PROMPT, "-n", "200", "--context", "64", "--backend", "reference")
    assert done.returncode == 0, done.stderr
    assert "the context holds 64 tokens" in done.stderr and "raise --context" in done.stderr
