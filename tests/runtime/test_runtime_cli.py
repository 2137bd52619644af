"""`edgec run` and `edgec bench` on a tiny model's `.edgec` file."""

from __future__ import annotations

import json

from conftest import run_cli
from runtime_helpers import PROMPT, export

from edgec.runtime import load


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
    assert 0 < result["open_s"] < result["first_token_s"]
    assert result["kv_cache_bytes"] == 2 * 2 * (16 + 7) * 32 * 4  # 2 layers, 23 cached tokens, kv_dim 32, fp32
    assert result["peak_rss"] >= result["baseline_rss"] + result["weights_prepared_bytes"]
    text = run_cli("bench", str(path), "--prompt-len", "16", "--gen", "4").stdout
    assert "decode" in text and "tokens/s" in text and "peak RSS" in text


def test_run_refuses_a_missing_file_in_one_line(tmp_path):
    done = run_cli("run", str(tmp_path / "absent.edgec"), "--prompt", "x")
    assert done.returncode == 2 and "no such file" in done.stderr and len(done.stderr.strip().splitlines()) == 1
