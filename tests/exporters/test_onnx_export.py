"""ONNX export: every format's ONNX Runtime op checked bit for bit, tiny models of every family against
Hugging Face (prefill and cached decode steps, padded batches, an empty first past), refusals, atomic
writes, the tied embedding, metadata and the summary `edgec inspect` reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import run_cli, tiny_tokenizer
from onnx import TensorProto, helper
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig

from edgec.activation_quant import quantize_activation
from edgec.assignment import quantizable
from edgec.compress import CalibrationSettings, compress
from edgec.compressed_io import save_compressed
from edgec.core.errors import EdgecError
from edgec.core.formats import FP8, Format, Int8, parse_format, registered_families
from edgec.export_sources import source_from_folder, source_from_result
from edgec.exporters import onnx_export
from edgec.exporters.onnx_encodings import Dense32, convert
from edgec.exporters.onnx_export import export_onnx, read_onnx_summary
from edgec.exporters.onnx_graph import IR_VERSION, OPSET
from edgec.exporters.onnx_lowering import MS_DOMAIN, LinearSpec, lower
from edgec.exporters.onnx_validate import session
from edgec.models.loading import load_model
from edgec.passes import LayerConfig

CAL = CalibrationSettings(samples=4, seq_len=32, batch_size=2)
SHAPE = (48, 256)  # (N, K) of the single-layer checks

# Formats ONNX Runtime 1.31 cannot run exactly, and the words their refusal must contain.
REFUSED = {"int3:g32": "3-bit", "int3:g128": "3-bit", "int3:g32:asym": "3-bit", "int3:g128:asym": "3-bit",
           "2:4+int4:g32:asym": "pruned zeros"}


def compressed(model_dir, fmt: str | None = None, method: str = "rtn", include_head: bool = False):
    """An export source for the model in `model_dir`, every linear (and the head, if asked) in `fmt`."""
    loaded = load_model(model_dir)
    if fmt is None:
        return source_from_result(loaded, None)
    refs = quantizable(loaded.model, loaded.adapter, include_head=include_head)
    result = compress(loaded, {n: LayerConfig(parse_format(fmt), method) for n in refs}, CAL, progress=False)
    return source_from_result(loaded, result)


def every_example() -> list[Format]:
    return [fmt for cls in registered_families().values() for fmt in cls.examples()]


def run_layer(spec: LinearSpec, x: np.ndarray) -> np.ndarray:
    """Run one lowered layer in ONNX Runtime on x (M, K)."""
    lowered = lower(spec, "x", "y")
    n = spec.encoding.weight.shape[0] if isinstance(spec.encoding, Dense32) else None
    graph = helper.make_graph(lowered.nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, x.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])], lowered.initializers)
    model = helper.make_model(graph, ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])
    return session(model.SerializeToString()).run(None, {"x": x})[0]


# ---- one layer: every registered format, bit for bit ----------------------------------------------------
@pytest.mark.parametrize("fmt", every_example(), ids=str)
def test_every_format_is_exact_through_onnx_runtime_or_refused(fmt):
    w = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    packed = fmt.quantize(w)
    if str(fmt) in REFUSED:
        with pytest.raises(EdgecError, match=f"layer 'blk.q'.*{REFUSED[str(fmt)]}"):
            convert(fmt, packed, SHAPE, "blk.q")
        return
    spec = LinearSpec("blk.q", str(fmt), convert(fmt, packed, SHAPE, "blk.q"))
    got = run_layer(spec, np.eye(SHAPE[1], dtype=np.float32)).T  # identity input: the dequantized weight itself
    want = fmt.dequantize(packed, SHAPE)
    if getattr(fmt, "asym", False):  # float zero points: (code - (-min/scale)) * scale, exact to float32 rounding
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-7 * np.abs(want).max())
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt,k", [("int4:g128", 200), ("int8", 200), ("int2:g64", 100)])
def test_a_partial_last_group_is_exact(fmt, k):
    fmt = parse_format(fmt)
    packed = fmt.quantize(np.random.default_rng(1).standard_normal((16, k)).astype(np.float32))
    spec = LinearSpec("blk.q", str(fmt), convert(fmt, packed, (16, k), "blk.q"))
    np.testing.assert_array_equal(run_layer(spec, np.eye(k, dtype=np.float32)).T, fmt.dequantize(packed, (16, k)))


@pytest.mark.parametrize("fmt,shape,why", [("nf4:g64", (16, 96), "partial last group"),
                                           ("2:4+int4:g256", (16, 1024), "block_size 512")])
def test_layouts_onnx_runtime_cannot_run_are_refused(fmt, shape, why):
    fmt = parse_format(fmt)
    packed = fmt.quantize(np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    spec = LinearSpec("blk.q", str(fmt), convert(fmt, packed, shape, "blk.q"))
    with pytest.raises(EdgecError, match=f"layer .blk.q.: format {re.escape(str(fmt))}.*{why}"):
        lower(spec, "x", "y")


@pytest.mark.parametrize("fmt", [Int8(), FP8()], ids=str)
def test_activation_quantization_matches_torch_including_out_of_range_inputs(fmt):
    rng = np.random.default_rng(2)
    packed = fmt.quantize(rng.standard_normal(SHAPE).astype(np.float32))
    scale = 0.01
    spec = LinearSpec("blk.q", str(fmt), convert(fmt, packed, SHAPE, "blk.q"), act_scale=scale)
    x = (rng.standard_normal((5, SHAPE[1])) * 2).astype(np.float32)  # far beyond 127 (448) steps of 0.01
    want = quantize_activation(torch.from_numpy(x), scale, fmt).numpy() @ fmt.dequantize(packed, SHAPE).T
    np.testing.assert_allclose(run_layer(spec, x), want, rtol=1e-5, atol=1e-4)


# ---- whole models -----------------------------------------------------------------------------------------
def hf_vs_onnx(path, loaded, steps: int = 2) -> float:
    """Largest |logit difference| between ORT and HF on a left-padded batch of two: prefill, then cached steps."""
    tok = loaded.tokenizer
    rows = [tok("It is a truth universally acknowledged")["input_ids"], tok("Mr. Darcy")["input_ids"]]
    t = max(map(len, rows))
    ids = np.array([[0] * (t - len(r)) + r for r in rows], dtype=np.int64)
    mask = (np.arange(t)[None] >= np.array([[t - len(r)] for r in rows])).astype(np.int64)
    sess = session(str(path))
    past = {i.name: np.zeros([2 if d == "batch_size" else 0 if isinstance(d, str) else d for d in i.shape], np.float32)
            for i in sess.get_inputs() if i.name.startswith("past_key_values")}  # an empty first past
    worst, start, positions = 0.0, 0, np.clip(mask.cumsum(1) - 1, 0, None)
    for _ in range(steps + 1):
        out, *present = sess.run(None, {"input_ids": ids[:, start:], "attention_mask": mask,
                                        "position_ids": positions[:, start:], **past})
        with torch.no_grad():
            ref = loaded.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                               position_ids=torch.from_numpy(positions)).logits[:, start:].numpy()
        keep = mask[:, start:].astype(bool)
        worst = max(worst, float(np.abs(out - ref)[keep].max()))
        past = dict(zip(past, present))
        nxt = ref[:, -1].argmax(-1)[:, None]
        start, ids = ids.shape[1], np.concatenate([ids, nxt], axis=1)
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], axis=1)
        positions = np.concatenate([positions, positions[:, -1:] + 1], axis=1)
    return worst


def nodes(path) -> list:
    return list(onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("fmt,op", [
    ("int4:g32", "MatMulNBits"), ("int4:g32:asym", "MatMulNBits"), ("int2:g32", "MatMulNBits"), ("int8", "MatMulNBits"),
    ("nf4:g32", "MatMulBnb4"), ("fp8", "DequantizeLinear"), ("fp16", "Cast"), ("bf16", "Cast"), ("2:4", "Cast"),
    ("2:4+int4:g32", "MatMulNBits"), ("2:4+int8", "MatMulNBits"), ("2:4+nf4:g32", "MatMulBnb4"),
    ("2:4+fp8", "DequantizeLinear"),
])
def test_tiny_llama_exports_each_format_to_its_op_and_matches_hf(tiny_llama_dir, tmp_path, fmt, op):
    source = compressed(tiny_llama_dir, fmt)
    out = tmp_path / "model.onnx"
    report = export_onnx(source, out)
    assert {e["op"].split("(")[0] for n, e in report.layers.items() if n != "lm_head"} == {op}
    q = next(n for n in nodes(out) if n.name.startswith("/model.layers.0.self_attn.q_proj/") and n.op_type == op)
    assert q.domain == (MS_DOMAIN if op.startswith("MatMul") else "")
    assert report.validation.mean_kl < 1e-9 and report.validation.max_abs_diff < 1e-4
    assert hf_vs_onnx(out, source.loaded) < 1e-4
    # No float copy of a quantized weight: each layer holds exactly its encoded bytes.
    summary = read_onnx_summary(out)
    k_dense = {e["layer"]: e for e in summary["layers"]}["model.layers.0.mlp.down_proj"]
    n, k = 64, 128
    bits = {"MatMulNBits": 8 if "int8" in fmt else 2 if "int2" in fmt else 4, "MatMulBnb4": 4,
            "DequantizeLinear": 8, "Cast": 16}[op]
    assert n * k * bits // 8 <= k_dense["bytes"] <= n * k * bits // 8 + n * k // 4  # + float32 scales and zero points
    assert all(t["dtype"] != "float" or t["shape"] != [k, n] for t in k_dense["tensors"])
    assert sum(t["bytes"] for t in summary["other"]) < 320 * 64 * 4 + 8_000  # embedding, norms, constants
    assert ("edgec.sparse" in summary["metadata"]) == fmt.startswith("2:4")


def test_every_llama_family_variant_exports_and_matches_hf(family_dir, tmp_path):
    source = compressed(family_dir, "int4:g32")
    report = export_onnx(source, tmp_path / "model.onnx")
    assert report.validation.mean_kl < 1e-9 and report.validation.max_abs_diff < 1e-4
    assert hf_vs_onnx(tmp_path / "model.onnx", source.loaded) < 1e-4


@pytest.mark.parametrize("fmt", [None, "int4:g32"])
def test_phi3_exports_its_fused_projections_and_matches_hf(phi3_dir, tmp_path, fmt):
    """Phi-3 (a window of 8 shorter than the prompt; rotary on half of each head): one op per fused linear."""
    source = compressed(phi3_dir, fmt)
    out = tmp_path / "model.onnx"
    report = export_onnx(source, out)
    assert {n.split(".")[-1] for n in report.layers if n != "lm_head"} == {"qkv_proj", "o_proj", "gate_up_proj",
                                                                           "down_proj"}
    assert report.validation.mean_kl < 1e-9 and report.validation.max_abs_diff < 1e-4
    assert hf_vs_onnx(out, source.loaded) < 1e-4


def test_decoder_inputs_outputs_and_axes_are_those_genai_and_optimum_use(tiny_llama_dir, tmp_path):
    out = tmp_path / "model.onnx"
    export_onnx(compressed(tiny_llama_dir, "int4:g32"), out, verify=False)
    graph = onnx.load(str(out)).graph
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in [*graph.input, *graph.output]}
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "position_ids", "past_key_values.0.key",
                                             "past_key_values.0.value", "past_key_values.1.key", "past_key_values.1.value"]
    assert [o.name for o in graph.output] == ["logits", "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert dims["past_key_values.1.value"] == ["batch_size", 2, "past_sequence_length", 16]
    assert dims["present.0.key"] == ["batch_size", 2, "total_sequence_length", 16]
    assert dims["logits"] == ["batch_size", "sequence_length", 320]
    assert dims["attention_mask"] == ["batch_size", "total_sequence_length"]


def sharp_llama(path, theta: float) -> None:
    """A tiny LLaMA with large weights, so that attention (and so the rope base) matters, saved at `path`."""
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=320, max_position_embeddings=256, tie_word_embeddings=True,
                         initializer_range=0.3, rope_parameters={"rope_type": "default", "rope_theta": theta})
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)


def test_rope_base_comes_from_the_config(tmp_path):
    sharp_llama(tmp_path / "theta", 100000.0)
    source = compressed(tmp_path / "theta")
    report = export_onnx(source, tmp_path / "m.onnx")
    inits = {t.name: t for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    np.testing.assert_allclose(onnx.numpy_helper.to_array(inits["inv_freq"]),
                               1.0 / 100000.0 ** (np.arange(0, 16, 2) / 16), rtol=1e-6)
    assert report.validation.mean_kl < 1e-9
    assert hf_vs_onnx(tmp_path / "m.onnx", source.loaded, steps=3) < 1e-4
    # The comparison can tell bases apart: the same weights with base 10000 give other logits.
    ids = torch.tensor([list(range(40, 60))])
    with torch.no_grad():
        logits = source.loaded.model(input_ids=ids).logits
        source.loaded.model.model.rotary_emb.inv_freq.copy_(1.0 / 10000.0 ** (torch.arange(0, 16, 2) / 16))
        other = source.loaded.model(input_ids=ids).logits
    assert (logits - other).abs().max() > 1e-2


def test_validation_catches_a_wrong_rope_and_writes_nothing(tmp_path, monkeypatch):
    sharp_llama(tmp_path / "sharp", 10000.0)
    build = onnx_export.build_decoder

    def off_by_5_percent(hf):
        flat = build(hf)
        flat.inv_freq = torch.nn.Parameter(flat.inv_freq * 1.05, requires_grad=False)
        return flat

    monkeypatch.setattr(onnx_export, "build_decoder", off_by_5_percent)
    with pytest.raises(EdgecError, match="ONNX validation failed: mean KL"):
        export_onnx(compressed(tmp_path / "sharp"), tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharp"]


def test_tied_float_head_reads_the_embedding_once(tiny_llama_dir, tmp_path):
    out = tmp_path / "model.onnx"
    report = export_onnx(compressed(tiny_llama_dir, "int4:g32"), out, verify=False)
    graph = onnx.load(str(out)).graph
    big = [tuple(t.dims) for t in graph.initializer if 320 in t.dims]
    assert big == [(320, 64)]
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "model.embed_tokens.weight" and helper.get_attribute_value(gemm.attribute[0]) == 1
    assert report.layers["lm_head"]["op"].startswith("Gemm")


def test_compressed_tied_head_shares_its_quantized_weights_with_the_embedding(tiny_llama_dir, tmp_path):
    out = tmp_path / "model.onnx"
    source = compressed(tiny_llama_dir, "int4:g32", include_head=True)
    report = export_onnx(source, out)
    graph = onnx.load(str(out)).graph
    assert [t.name for t in graph.initializer if 320 in t.dims] == ["lm_head.qweight", "lm_head.scales"]
    gather = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    assert gather.input[0] == "lm_head.qweight" and report.embedding_op.startswith("GatherBlockQuantized")
    assert hf_vs_onnx(out, source.loaded) < 1e-4


def test_compressed_tied_head_without_a_quantized_gather_is_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(EdgecError, match="layer 'lm_head'.*tied to the embedding.*nf4:g32"):
        export_onnx(compressed(tiny_llama_dir, "nf4:g32", include_head=True), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_inexpressible_format_is_refused_naming_the_layer_and_nothing_is_written(tiny_llama_dir, tmp_path):
    source = compressed(tiny_llama_dir, "int3:g32")
    with pytest.raises(EdgecError, match=r"layer 'model\.layers\.0\.self_attn\.q_proj': format int3:g32 cannot"):
        export_onnx(source, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_failed_validation_leaves_nothing_and_keeps_an_existing_file(tiny_llama_dir, tmp_path, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_text("previous")
    monkeypatch.setattr(onnx_export, "MAX_MEAN_KL", -1.0)
    with pytest.raises(EdgecError, match="ONNX validation failed: mean KL"):
        export_onnx(compressed(tiny_llama_dir, "int4:g32"), out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and out.read_text() == "previous"


def test_large_exports_use_one_external_data_file(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "SINGLE_FILE_LIMIT", 0)
    out = tmp_path / "m.onnx"
    report = export_onnx(compressed(tiny_llama_dir, "int8"), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation_config.json", "m.onnx", "m.onnx.data",
                                                          "tokenizer.json", "tokenizer_config.json"]
    assert report.external_data and report.file_bytes == out.stat().st_size + (tmp_path / "m.onnx.data").stat().st_size
    assert read_onnx_summary(out)["metadata"]["edgec.validated_providers"] == "CPUExecutionProvider"


def test_metadata_and_summary(tiny_llama_dir, tmp_path):
    out = tmp_path / "m.onnx"
    source = compressed(tiny_llama_dir, "int4:g32")
    source.plan = {"device": {"name": "rtx4090"}}
    report = export_onnx(source, out)
    summary = read_onnx_summary(out)
    meta = summary["metadata"]
    assert meta["edgec.core.version"] and meta["edgec.source_weights_sha256"] == source.source_hash
    assert meta["edgec.plan_device"] == "rtx4090" and meta["edgec.validated_providers"] == "CPUExecutionProvider"
    assert meta["edgec.layers"]["model.layers.1.mlp.up_proj"] == {
        "format": "int4:g32", "method": "rtn", "sparsity": 0.0, "op": "MatMulNBits(bits=4, block_size=32)"}
    assert meta["edgec.validation"]["mean_kl"] == pytest.approx(report.validation.mean_kl)
    up = next(e for e in summary["layers"] if e["layer"] == "model.layers.1.mlp.up_proj")
    assert {t["name"]: (t["shape"], t["bytes"]) for t in up["tensors"]} == {
        "model.layers.1.mlp.up_proj.qweight": ([128, 2, 16], 4096), "model.layers.1.mlp.up_proj.scales": ([128, 2], 1024)}
    assert summary["weight_bytes"] == report.weight_bytes and summary["file_bytes"] == report.file_bytes


def test_summary_refuses_other_files(tmp_path):
    plain = tmp_path / "plain.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(plain))
    with pytest.raises(EdgecError, match="plain.onnx: not an ONNX model exported by edgec"):
        read_onnx_summary(plain)
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(EdgecError, match="junk.onnx: not a readable ONNX file"):
        read_onnx_summary(tmp_path / "junk.onnx")


@pytest.mark.parametrize("fmt,method,act_op", [("int8", "smoothquant", "QuantizeLinear"), ("fp8", "smoothquant", "Cast")])
def test_w8a8_quantizes_activations_from_a_compressed_folder(tiny_llama_dir, tmp_path, fmt, method, act_op):
    loaded = load_model(tiny_llama_dir)
    refs = quantizable(loaded.model, loaded.adapter)
    result = compress(loaded, {n: LayerConfig(parse_format(fmt), method) for n in refs}, CAL, progress=False)
    save_compressed(loaded, result, tmp_path / "folder", CAL)
    source = source_from_folder(tmp_path / "folder")  # loading attaches the activation quantization hooks
    report = export_onnx(source, tmp_path / "m.onnx")
    assert any(n.name == f"/model.layers.0.mlp.down_proj/act/{act_op}" or
               n.name.startswith(f"/model.layers.0.mlp.down_proj/act/{act_op}") for n in nodes(tmp_path / "m.onnx"))
    assert report.validation.mean_kl < 1e-5
    assert hf_vs_onnx(tmp_path / "m.onnx", source.loaded) < 0.05


def test_gpt2_with_unfolded_awq_scales_matches_hf(tiny_gpt2_dir, tmp_path):
    source = compressed(tiny_gpt2_dir, "int4:g32", method="awq")
    assert any("input_scale" in layer.packed() for layer in source.layers.values())
    out = tmp_path / "gpt2.onnx"
    report = export_onnx(source, out)
    assert any(n.op_type == "Div" and n.name.endswith("mlp.c_proj/Div") for n in nodes(out))
    assert report.validation.mean_kl < 1e-9 and hf_vs_onnx(out, source.loaded) < 1e-4


@pytest.mark.parametrize("fmt", [None, "int4:g32"])
def test_gemma3_with_sliding_and_global_layers_matches_hf(tiny_gemma3_dir, tmp_path, fmt):
    """Per-layer windows and rotary bases, norms scaling by 1 + weight, the scaled embedding, soft-capped logits."""
    source = compressed(tiny_gemma3_dir, fmt)
    out = tmp_path / "gemma3.onnx"
    report = export_onnx(source, out)
    assert report.validation.mean_kl < 1e-9 and report.validation.max_abs_diff < 1e-4
    assert hf_vs_onnx(out, source.loaded, steps=6) < 1e-4  # decode steps past the window of 4
    assert any(n.op_type == "Tanh" for n in nodes(out))  # the logits' soft cap


def test_gemma3_settings_transformers_does_not_compute_are_refused():
    from conftest import tiny_gemma3_config

    from edgec.exporters.onnx_decoder import build_decoder

    for setting, named in (("attn_logit_softcapping", "attention logit soft-capping"),
                           ("use_bidirectional_attention", "bidirectional attention")):
        config = tiny_gemma3_config()
        setattr(config, setting, True if setting.startswith("use_") else 50.0)
        with pytest.raises(EdgecError, match=named):
            build_decoder(AutoModelForCausalLM.from_config(config))


def test_bert_encoder_matches_hf(tiny_bert_dir, tmp_path):
    source = compressed(tiny_bert_dir, "int8")
    out = tmp_path / "bert.onnx"
    report = export_onnx(source, out)
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]
    assert report.task == "encoder" and report.validation.max_abs_diff < 1e-4
    batch = dict(source.loaded.tokenizer(["a short one", "and a rather longer sentence here"], return_tensors="np", padding=True))
    batch["token_type_ids"] = (np.arange(batch["input_ids"].shape[1]) >= 3).astype(np.int64)[None].repeat(2, 0)
    batch = {k: v.astype(np.int64) for k, v in batch.items()}
    (got,) = session(str(out)).run(None, batch)
    with torch.no_grad():
        ref = source.loaded.model(**{k: torch.from_numpy(v) for k, v in batch.items()}).last_hidden_state.numpy()
    keep = batch["attention_mask"].astype(bool)
    np.testing.assert_allclose(got[keep], ref[keep], atol=1e-4)


def test_ort_baseline_quantizes_an_fp32_export(tiny_llama_dir, tmp_path):
    from edgec.exporters.onnx_baseline import ort_int4_baseline

    export_onnx(compressed(tiny_llama_dir), tmp_path / "fp32.onnx", verify=False)
    out = ort_int4_baseline(tmp_path / "fp32.onnx", tmp_path / "ort.onnx", block_size=32)
    ops = [n for n in nodes(out) if n.op_type == "MatMulNBits"]
    assert len(ops) == 14 and {helper.get_attribute_value(a) for n in ops for a in n.attribute if a.name == "block_size"} == {32}
    with pytest.raises(EdgecError, match="not an uncompressed"):
        ort_int4_baseline(out, tmp_path / "again.onnx")


@pytest.mark.slow
def test_default_model_int4_export_generates_what_edgec_run_prints(tmp_path):
    from edgec.exporters.edgec_export import export_edgec
    from edgec.runtime import load

    source = compressed(None, "int4:g128")
    report = export_onnx(source, tmp_path / "smollm2.onnx")
    assert report.validation.mean_kl < 1e-8 and report.validation.max_abs_diff < 1e-3
    assert report.layers["model.layers.0.mlp.down_proj"]["op"] == "MatMulNBits(bits=4, block_size=128)"
    assert report.file_bytes < 190e6  # 113 MB fp32 embedding (tied head) + 56 MB of int4 layers
    export_edgec(source, tmp_path / "smollm2.edgec")
    prompt = "It is a truth universally acknowledged that"
    expected = "".join(load(tmp_path / "smollm2.edgec").generate(prompt, max_new_tokens=24))
    assert len(expected) > 40 and run_onnx_example(tmp_path / "smollm2.onnx", prompt, 24) == prompt + expected

EXAMPLE = Path(__file__).parents[2] / "examples" / "onnx_generate.py"
# Runs the example as a user with only onnxruntime, numpy and tokenizers would: importing torch,
# transformers or edgec (directly or through another package) fails.
_WITHOUT_TORCH = """
import runpy, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "edgec"):
            raise ImportError(f"{name} is not installed here")
sys.meta_path.insert(0, Blocked())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_onnx_example(model: Path, prompt: str, tokens: int) -> str:
    """What examples/onnx_generate.py prints for `model`, run in a subprocess that cannot import torch or edgec."""
    done = subprocess.run([sys.executable, "-I", "-c", _WITHOUT_TORCH, str(EXAMPLE), str(model), prompt, str(tokens)],
                          capture_output=True, text=True, timeout=600, cwd=model.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.removesuffix("\n")


def hf_greedy(loaded, prompt: str, tokens: int, eos: list[int]) -> str:
    """Greedy continuation by full forwards of the torch model the export was validated against."""
    ids = loaded.tokenizer(prompt)["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(tokens):
            token = int(loaded.model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if token in eos:
                break
            new.append(token)
    return loaded.tokenizer.decode(new, skip_special_tokens=True)


def test_tokenizer_and_generation_config_are_written_beside_and_the_example_generates(tiny_llama_dir, tmp_path):
    source = compressed(tiny_llama_dir, "int4:g32")
    out = tmp_path / "model.onnx"
    report = export_onnx(source, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generation_config.json", "model.onnx", "tokenizer.json",
                                                          "tokenizer_config.json"]
    assert sorted(report.beside) == ["generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    tok = source.loaded.tokenizer
    assert generation == {"bos_token_id": tok.bos_token_id, "eos_token_id": [tok.eos_token_id], "pad_token_id": None}
    assert GenerationConfig.from_pretrained(tmp_path).eos_token_id == [tok.eos_token_id]  # transformers reads it
    assert AutoTokenizer.from_pretrained(tmp_path)("a truth")["input_ids"] == tok("a truth")["input_ids"]
    meta = read_onnx_summary(out)["metadata"]
    assert meta["edgec.tokenizer"] == "tokenizer.json" and meta["edgec.generation"] == generation
    assert (tmp_path / "model.onnx").stat().st_size == report.file_bytes  # the size is the model's alone
    prompt = "It is a truth universally acknowledged"
    assert run_onnx_example(out, prompt, 12) == prompt + hf_greedy(source.loaded, prompt, 12, [tok.eos_token_id])


def test_the_example_stops_at_an_end_of_sequence_id(tiny_llama_dir, tmp_path):
    source = compressed(tiny_llama_dir, "int8")
    out = tmp_path / "model.onnx"
    export_onnx(source, out, verify=False)
    prompt = "It is a truth"
    first = hf_greedy(source.loaded, prompt, 1, [])
    first_id = source.loaded.tokenizer(first, add_special_tokens=False)["input_ids"][0]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [first_id]}))
    assert run_onnx_example(out, prompt, 12) == prompt


def test_encoders_get_their_tokenizer_and_no_generation_config(tiny_bert_dir, tmp_path):
    export_onnx(compressed(tiny_bert_dir, "int8"), tmp_path / "bert.onnx", verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert.onnx", "tokenizer.json", "tokenizer_config.json"]


def test_two_exports_of_one_model_share_a_folder_and_another_model_is_refused(tiny_llama_dir, tiny_bert_dir, tmp_path):
    export_onnx(compressed(tiny_llama_dir, "int4:g32"), tmp_path / "int4.onnx", verify=False)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    export_onnx(compressed(tiny_llama_dir, "int8"), tmp_path / "int8.onnx", verify=False)
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert after == before | {"int8.onnx": after["int8.onnx"]}  # the shared files were left as they were
    with pytest.raises(EdgecError, match=r"tokenizer_config\.json already exists and belongs to another model"):
        export_onnx(compressed(tiny_bert_dir, "int8"), tmp_path / "bert.onnx", verify=False)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == after


def test_cli_refuses_a_folder_with_another_tokenizer_before_compressing(tiny_llama_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    done = run_cli("export", "--model", str(tiny_llama_dir), "--format", "int4:g32", "--to", "edgec", "--to", "onnx",
                   "-o", str(tmp_path / "m"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "tokenizer.json already exists" in done.stderr and "compress" not in done.stderr.lower()
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]


def test_an_output_named_like_a_file_beside_it_is_refused(tiny_llama_dir, tmp_path):
    with pytest.raises(EdgecError, match="tokenizer.json is the name of a file written beside the model"):
        export_onnx(compressed(tiny_llama_dir, "int8"), tmp_path / "tokenizer.json")
    assert list(tmp_path.iterdir()) == []


def test_docs_show_the_example_whole():
    doc = (Path(__file__).parents[2] / "docs" / "onnx.md").read_text()
    assert "```python\n" + EXAMPLE.read_text() + "```\n" in doc, "docs/onnx.md must quote examples/onnx_generate.py as it is"
