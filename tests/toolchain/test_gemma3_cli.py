"""A tiny Gemma 3 text model through the CLI as a user runs it: eval, compress, plan, export to both targets, run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_json, run_cli

from edgec.compressed_io import MANIFEST
from edgec.runtime import load

SMALL = ("--samples", "4", "--seq-len", "32")


def test_eval_compares_the_original_with_rtn(tiny_gemma3_dir):
    report = cli_json("eval", "-m", str(tiny_gemma3_dir), "-f", "int4:g32", "--max-tokens", "512", "--seq-len", "64")
    assert report["task"] == "causal-lm" and report["quantized_layers"] == 4 * 7
    assert report["lm"]["perplexity_original"] < 2 * 320  # a random model near the uniform 320, and finite
    assert 0 <= report["lm"]["kl_mean"] < 0.1


@pytest.mark.parametrize("method, fmt", [("awq", "int4:g32"), ("smoothquant", "int8"), ("wanda", "2:4")])
def test_compress_with_the_passes_that_fold_or_prune(tiny_gemma3_dir, tmp_path, method, fmt):
    out = tmp_path / "out"
    done = run_cli("compress", "-m", str(tiny_gemma3_dir), "-f", fmt, "--method", method, *SMALL, "-o", str(out))
    assert done.returncode == 0, done.stderr
    layers = json.loads((out / MANIFEST).read_text())["layers"]
    assert len(layers) == 4 * 7 and {v["format"] for v in layers.values()} == {fmt}


def test_plan_for_the_host_then_export_and_run(tiny_gemma3_dir, tmp_path):
    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    plan = tmp_path / "plan.json"
    done = run_cli("plan", "--device", "host", "--methods", "rtn", "-m", str(tiny_gemma3_dir), "--samples", "2",
                   "--loss-samples", "2", "-o", str(plan), env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(plan.read_text())["layers"]) >= 4 * 7
    out = tmp_path / "m.edgec"
    done = run_cli("export", "-m", str(tiny_gemma3_dir), "--plan", str(plan), *SMALL, "--to", "edgec", "-o", str(out),
                   env=env)
    assert done.returncode == 0, done.stderr
    model = load(out, backend="reference")
    assert model.config.architecture == "gemma3_text" and np.isfinite(model.forward([5, 6, 7, 8, 9, 10])).all()
    done = run_cli("run", str(out), "-p", "It is a truth", "-n", "8")
    assert done.returncode == 0 and done.stdout.startswith("It is a truth"), done.stderr
