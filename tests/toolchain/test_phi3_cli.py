"""Phi-3 through the CLI on a tiny model: eval, compress, plan for the host, and export to `.edgec` and ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_json, run_cli

from edgec.data import evaluation_text
from edgec.models.loading import load_model
from edgec.runtime import load


def test_eval_reports_the_compressed_models_divergence(tiny_phi3_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(evaluation_text()[:30_000])
    out = cli_json("eval", "--model", str(tiny_phi3_dir), "--format", "int4:g32", "--text", str(text),
                   "--seq-len", "64", "--max-tokens", "256")
    assert out["lm"]["kl_mean"] > 0 and out["bytes_compressed"] < out["bytes_original"]


@pytest.mark.parametrize("method, fmt", [("awq", "int4:g32"), ("smoothquant", "int8"), ("wanda", "2:4")])
def test_compress_writes_a_folder_that_loads(tiny_phi3_dir, tmp_path, method, fmt):
    out = tmp_path / "out"
    done = run_cli("compress", "--model", str(tiny_phi3_dir), "--format", fmt, "--method", method,
                   "--samples", "4", "--seq-len", "32", "-o", str(out))
    assert done.returncode == 0, done.stderr
    layers = json.loads((out / "edgec-compression.json").read_text())["layers"]
    assert {name.split(".")[-1] for name in layers} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert load_model(out).model.config.model_type == "phi3"


def test_a_host_plan_exports_to_edgec_and_onnx_and_runs(tiny_phi3_dir, tmp_path):
    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    # --keep-head: the tiny model's head is tied to its embedding, which ONNX gathers exactly only in int4/int8
    plan = cli_json("plan", "--device", "host", "--methods", "rtn", "--keep-head", "--model", str(tiny_phi3_dir),
                    "--samples", "2", "-o", str(tmp_path / "plan.json"), env=env)
    assert len(plan["layers"]) == 2 * 4  # one format each for qkv_proj, o_proj, gate_up_proj, down_proj
    assert {layer["method"] for layer in plan["layers"].values()} == {"rtn"}
    common = ("-m", str(tiny_phi3_dir), "--plan", str(tmp_path / "plan.json"), "--samples", "2", "--seq-len", "32")
    done = run_cli("export", *common, "--to", "edgec", "--to", "onnx", "-o", str(tmp_path / "m"), env=env)
    assert done.returncode == 0, done.stderr  # the ONNX model was validated against torch in ONNX Runtime
    assert (tmp_path / "m.onnx").is_file()
    model = load(tmp_path / "m.edgec", backend="reference")
    assert model.config.architecture == "phi3"
    assert np.isfinite(model.forward(model.tokenizer.encode("It is a truth"))).all()
    done = run_cli("run", str(tmp_path / "m.edgec"), "--prompt", "It is", "-n", "4", "--backend", "reference")
    assert done.returncode == 0, done.stderr
