"""`edgec export --to edgec` and `edgec inspect` on tiny real models: what is stored, how, and the refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli_json, run_cli
from safetensors.numpy import load_file

from edgec.models.loading import load_model
from edgec.runtime.container import open_container

FIXED_TIME = {"SOURCE_DATE_EPOCH": "1767225600"}  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="module")
def compressed_int4(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "int4"
    done = run_cli("compress", "-m", str(tiny_llama_dir), "-f", "int4:g32", "--method", "gptq", "--samples", "4",
                   "--seq-len", "64", "--include-head", "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_export_of_a_compressed_folder_stores_its_buffers_bit_for_bit(compressed_int4, tmp_path):
    out = tmp_path / "m.edgec"
    summary = cli_json("export", "--compressed", str(compressed_int4), "--to", "edgec", "-o", str(out))
    manifest = json.loads((compressed_int4 / "edgec-compression.json").read_text())
    packed = load_file(str(compressed_int4 / "packed.safetensors"))
    reference = load_model(compressed_int4).model.state_dict()
    with open_container(out) as f:
        assert summary["outputs"]["edgec"]["bytes"] == out.stat().st_size == f.file_size
        assert f.metadata["edgec.layers"] == manifest["layers"]
        assert f.metadata["provenance.source_sha256"] == manifest["source"]["weights_sha256"]
        assert f.metadata["provenance.calibration"]["tokens"] == manifest["calibration"]["tokens"]
        assert f.metadata["model.config"]["model_type"] == "llama"
        assert f.metadata["edgec.aliases"] == {"lm_head.weight": "model.embed_tokens.weight"}
        for layer in manifest["layers"]:
            name = "model.embed_tokens.weight" if layer == "lm_head" else f"{layer}.weight"
            for buffer, array in f.buffers(name).items():
                np.testing.assert_array_equal(array, packed[f"{layer}::{buffer}"])
            np.testing.assert_array_equal(f.dequantize(name), reference[f"{layer}.weight"].numpy())
        norm = f.tensors["model.norm.weight"]
        assert str(norm.format) == "fp16" and norm.shape == (64,)
        np.testing.assert_array_equal(f.dequantize("model.norm.weight"),
                                      reference["model.norm.weight"].numpy().astype(np.float16).astype(np.float32))


def test_payload_is_exactly_the_bytes_the_planner_counts(compressed_int4, tmp_path):
    """Compressed linears in their formats plus every other parameter once in 16 bit."""
    out = tmp_path / "m.edgec"
    cli_json("export", "--compressed", str(compressed_int4), "--to", "edgec", "-o", str(out))
    from edgec.core.formats import parse_format

    model = load_model(compressed_int4).model
    fmt = parse_format("int4:g32")
    linears = {n: m for n, m in model.named_modules() if isinstance(m, __import__("torch").nn.Linear)}
    covered = {id(m.weight) for m in linears.values()}
    expected = sum(fmt.nbytes(tuple(m.weight.shape)) for m in linears.values())
    expected += 2 * sum(p.numel() for p in model.parameters() if id(p) not in covered)
    with open_container(out) as f:
        assert sum(e.nbytes for e in f.tensors.values()) == expected


def test_export_compressing_on_the_way_matches_export_of_the_compressed_folder(tiny_llama_dir, compressed_int4, tmp_path):
    direct, via_folder = tmp_path / "direct.edgec", tmp_path / "folder.edgec"
    assert run_cli("export", "-m", str(tiny_llama_dir), "-f", "int4:g32", "--method", "gptq", "--samples", "4",
                   "--seq-len", "64", "--include-head", "--to", "edgec", "-o", str(direct), env=FIXED_TIME).returncode == 0
    assert run_cli("export", "--compressed", str(compressed_int4), "--to", "edgec", "-o", str(via_folder),
                   env=FIXED_TIME).returncode == 0
    with open_container(direct) as a, open_container(via_folder) as b:
        assert list(a.tensors) == list(b.tensors)
        for name in a.tensors:
            for key, array in a.buffers(name).items():
                np.testing.assert_array_equal(array, b.buffers(name)[key], err_msg=name)


def test_export_is_reproducible_byte_for_byte(tiny_llama_dir, tmp_path):
    first, second = tmp_path / "a.edgec", tmp_path / "b.edgec"
    for out in (first, second):
        done = run_cli("export", "-m", str(tiny_llama_dir), "-f", "nf4:g32", "--to", "edgec", "-o", str(out), env=FIXED_TIME)
        assert done.returncode == 0, done.stderr
    assert first.read_bytes() == second.read_bytes()
    with open_container(first) as f:
        assert f.metadata["provenance.created"] == "2026-01-01T00:00:00Z"


def test_export_after_a_plan_records_it_and_stores_its_formats(tiny_llama_dir, tmp_path):
    env = {"EDGEC_CACHE_DIR": str(tmp_path / "cache")}
    plan_path = tmp_path / "plan.json"
    plan = cli_json("plan", "--device", "rtx4090", "-m", str(tiny_llama_dir), "--avg-bits", "6", "--samples", "4",
                    "-o", str(plan_path), env=env)
    out = tmp_path / "m.edgec"
    done = run_cli("export", "-m", str(tiny_llama_dir), "--plan", str(plan_path), "--samples", "4", "--seq-len", "64",
                   "--to", "edgec", "-o", str(out), env=env)
    assert done.returncode == 0, done.stderr
    with open_container(out) as f:
        assert f.metadata["edgec.plan"] == plan
        assert f.metadata["edgec.device"] == "rtx4090"
        for layer, entry in plan["layers"].items():
            assert str(f.resolve(f"{layer}.weight").format) == entry["format"]
        assert sum(e.nbytes for e in f.tensors.values()) == plan["totals"]["weights_bytes"]


def test_smoothquant_export_stores_the_activation_scale(tiny_llama_dir, tmp_path):
    out = tmp_path / "m.edgec"
    done = run_cli("export", "-m", str(tiny_llama_dir), "-f", "int8", "--method", "smoothquant", "--samples", "4",
                   "--seq-len", "64", "--to", "edgec", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with open_container(out) as f:
        q = f.buffers("model.layers.0.self_attn.q_proj.weight")
        assert q["act_scale"].shape == (1,) and q["act_scale"][0] > 0


def test_uncompressed_export_stores_16_bit_weights(tiny_bert_dir, tmp_path):
    out = tmp_path / "bert.edgec"
    assert run_cli("export", "-m", str(tiny_bert_dir), "--to", "edgec", "-o", str(out)).returncode == 0
    with open_container(out) as f:
        assert f.metadata["general.task"] == "encoder" and f.metadata["edgec.layers"] == {}
        assert {str(e.format) for e in f.tensors.values()} == {"fp16"}


def test_inspect_prints_metadata_tensors_and_checksum_states(compressed_int4, tmp_path):
    out = tmp_path / "m.edgec"
    cli_json("export", "--compressed", str(compressed_int4), "--to", "edgec", "-o", str(out))
    report = cli_json("inspect", str(out))
    assert report["kind"] == "edgec" and report["bytes"] == out.stat().st_size
    assert {row["state"] for row in report["tensors"]} == {"verified"}
    assert "tokenizer.json" not in report["metadata"]
    text = run_cli("inspect", str(out)).stdout
    assert "int4:g32" in text and "model.layers.1.mlp.down_proj.weight" in text and "verified" in text
    unverified = cli_json("inspect", str(out), "--no-verify")
    assert {row["state"] for row in unverified["tensors"]} == {"not checked"}
    data = bytearray(out.read_bytes())
    data[-5] ^= 0xFF
    out.write_bytes(bytes(data))
    done = run_cli("inspect", str(out))
    assert done.returncode == 2
    assert "checksum mismatch" in done.stderr and "mismatch" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--compressed", "{tiny}", "--to", "edgec"], "not a folder written by `edgec compress`"),
    (["--compressed", "{compressed}", "-f", "int8", "--to", "edgec"], "--compressed is already compressed"),
    (["-m", "{tiny}", "-f", "int5:g32", "--to", "edgec"], "unknown format 'int5:g32'"),
    (["-m", "{tiny}", "-f", "int8", "--plan", "p.json", "--to", "edgec"], "not both"),
    (["-m", "{tiny}/missing", "--to", "edgec"], "missing"),
])
def test_export_refusals_leave_no_output(args, message, tiny_llama_dir, compressed_int4, tmp_path):
    out = tmp_path / "out.edgec"
    args = [a.format(tiny=tiny_llama_dir, compressed=compressed_int4) for a in args]
    done = run_cli("export", *args, "-o", str(out))
    assert done.returncode != 0 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_refuses_an_existing_output(tiny_llama_dir, tmp_path):
    out = tmp_path / "out.edgec"
    out.write_bytes(b"keep me")
    done = run_cli("export", "-m", str(tiny_llama_dir), "--to", "edgec", "-o", str(out))
    assert done.returncode == 2 and "already exists" in done.stderr
    assert out.read_bytes() == b"keep me"


def test_export_to_both_targets_at_once_and_inspect_the_onnx_file(compressed_int4, tmp_path):
    stem = tmp_path / "tiny"
    summary = cli_json("export", "--compressed", str(compressed_int4), "--to", "edgec", "--to", "onnx", "-o", str(stem))
    edgec_file, onnx_file = tmp_path / "tiny.edgec", tmp_path / "tiny.onnx"
    assert summary["outputs"]["edgec"]["path"] == str(edgec_file) and edgec_file.is_file()
    validation = summary["outputs"]["onnx"]["validation"]
    assert onnx_file.is_file() and validation["mean_kl"] < 1e-6
    assert {layer["op"] for layer in summary["outputs"]["onnx"]["layers"].values()} == {"MatMulNBits(bits=4, block_size=32)"}
    report = cli_json("inspect", str(onnx_file))
    assert len(report["layers"]) == 15 and report["metadata"]["edgec.source_weights_sha256"]
    text = run_cli("inspect", str(onnx_file)).stdout
    assert "MatMulNBits" in text and "model.layers.1.mlp.down_proj" in text
    done = run_cli("inspect", str(compressed_int4 / "edgec-compression.json"))  # blamed on neither format alone
    assert done.returncode == 2 and "not an .edgec file" in done.stderr and "not named .onnx" in done.stderr
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    done = run_cli("inspect", str(empty))
    assert done.returncode == 2 and "not an ONNX model exported by edgec" in done.stderr


def test_head_format_stores_the_head_apart_from_the_blocks(tiny_llama_dir, tmp_path):
    out = tmp_path / "m.edgec"
    done = run_cli("export", "-m", str(tiny_llama_dir), "-f", "int4:g32", "--head-format", "int8", "--to", "edgec",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    with open_container(out) as f:
        assert str(f.resolve("lm_head.weight").format) == "int8"
        assert str(f.resolve("model.embed_tokens.weight").format) == "int8"  # tied to the head
        assert str(f.resolve("model.layers.0.mlp.up_proj.weight").format) == "int4:g32"
    done = run_cli("export", "-m", str(tiny_llama_dir), "--head-format", "int8", "--to", "edgec", "-o", str(tmp_path / "x.edgec"))
    assert done.returncode == 2 and "--head-format goes with --format" in done.stderr
    assert not (tmp_path / "x.edgec").exists()
