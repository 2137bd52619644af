"""`export_onnx`: a compressed model as an ONNX graph that ONNX Runtime runs on its own ops.

Causal LMs become a decoder with a KV cache (inputs input_ids, attention_mask,
position_ids, past_key_values.N.key/.value; outputs logits, present.N.key/.value),
BERT encoders an encoder (input_ids, attention_mask, token_type_ids ->
last_hidden_state). Each compressed linear keeps its stored values, mapped exactly
to one ONNX Runtime op family (see `onnx_encodings` and docs/onnx.md); a layer
that has no exact mapping is refused, never dequantized to float. The graph is
validated in ONNX Runtime against the torch model before the file appears. The
tokenizer and generation settings are written beside it (`tokenizer_files`), so ONNX
Runtime and `tokenizers` alone can generate text. Everything is staged in a temporary
folder beside `out` and moved into place, so a failure leaves nothing.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from edgec.core.errors import EdgecError
from edgec.core.formats import Sparse24
from edgec.core.progress import progress_counter
from edgec.core.version import __version__
from edgec.exporters import onnx_graph as graph_ops
from edgec.exporters.onnx_decoder import build_decoder, kv_shape
from edgec.exporters.onnx_encoder import build_encoder
from edgec.exporters.onnx_encodings import Dense32, convert
from edgec.exporters.onnx_files import save, set_metadata, staged
from edgec.exporters.onnx_lowering import LinearSpec
from edgec.exporters.onnx_summary import read_onnx_summary, tensor_bytes
from edgec.exporters.onnx_validate import (
    Validation,
    session,
    validate_decoder,
    validate_encoder,
)
from edgec.exporters.source import ExportSource
from edgec.exporters.tokenizer_files import check_beside, files_beside_model, generation_settings

__all__ = ["OnnxExportReport", "export_onnx", "read_onnx_summary"]

# Validation tolerances. The graph computes in float32 with exactly the reference's weights;
# what differs is the order of accumulation (MatMulNBits and MLAS GEMMs against torch's):
# on SmolLM2-135M int4:g128 a KL of 4e-11 and logits within 4e-6 of their range. W8A8 layers
# may also round an activation lying on a quantization midpoint the other way (one step of
# one code): KL ~1e-7, logits within 0.3 %. Real mistakes are far above: rotary frequencies
# off by 5 % cost a KL of 0.8 on a small model with sharp attention.
MAX_MEAN_KL = 1e-4  # nats per position, decoders
MAX_REL_DIFF = 1e-2  # largest |difference| relative to the reference's largest |value|
SINGLE_FILE_LIMIT = 2_000_000_000  # protobuf's 2 GB: above it weights go to external data


@dataclass
class OnnxExportReport:
    """What was exported, how each layer is computed, and how closely ONNX Runtime matched torch."""

    path: Path
    task: str
    architecture: str
    layers: dict[str, dict] = field(default_factory=dict)  # name -> format, method, sparsity, op
    embedding_op: str = "Gather"
    file_bytes: int = 0
    weight_bytes: int = 0  # all initializers
    external_data: bool = False
    beside: list[str] = field(default_factory=list)  # tokenizer and generation files in the model's folder
    validation: Validation | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["path"] = str(self.path)
        return out


def _linear_specs(source: ExportSource, refs: dict, embedding: str | None, tied: bool) -> list[LinearSpec]:
    specs = []
    for name, ref in refs.items():
        module = ref.module
        bias = module.bias.detach().float().numpy() if getattr(module, "bias", None) is not None else None
        layer = source.layers.get(name)
        if layer is None:
            specs.append(LinearSpec(name, "fp32", Dense32(ref.weight().float().numpy()), bias,
                                    tied_embedding=embedding if tied and name == "lm_head" else None))
            continue
        packed = layer.packed()
        act = packed.get("act_scale")
        specs.append(LinearSpec(name, str(layer.format), convert(layer.format, packed, layer.shape, name), bias,
                                packed.get("input_scale"), None if act is None else float(act[0])))
    return specs


def _state_names(flat, hf) -> dict[str, str]:
    """Flat model tensor name -> the HF name of the same storage."""
    by_ptr: dict[int, str] = {}
    for name, t in hf.state_dict().items():
        by_ptr.setdefault(t.data_ptr(), name)
    return {name: by_ptr[t.data_ptr()] for name, t in flat.state_dict().items() if t.data_ptr() in by_ptr}


def _metadata(source: ExportSource, report: OnnxExportReport) -> dict[str, str]:
    meta = {
        "edgec.core.version": __version__,
        "edgec.task": report.task,
        "edgec.architecture": report.architecture,
        "edgec.source_model": source.source_name,
        "edgec.source_weights_sha256": source.source_hash,
        "edgec.layers": json.dumps(report.layers),
        "edgec.embedding": report.embedding_op,
        "edgec.tokenizer": "tokenizer.json",
    }
    if report.task == "causal-lm":
        meta["edgec.generation"] = json.dumps(generation_settings(source.loaded))
    if source.plan:
        meta["edgec.plan_device"] = str((source.plan.get("device") or {}).get("name", ""))
    if source.calibration:
        meta["edgec.calibration"] = json.dumps(source.calibration)
    if any(isinstance(layer.format, Sparse24) for layer in source.layers.values()):
        meta["edgec.sparse"] = "2:4 stored dense (no sparse op is used; pruned weights are stored zeros)"
    if report.validation is not None:
        meta["edgec.validated_providers"] = ",".join(report.validation.providers)
        meta["edgec.validation"] = json.dumps(report.validation.to_json())
    return meta


def build_model(source: ExportSource, progress: bool = False) -> tuple[onnx.ModelProto, OnnxExportReport]:
    """The ONNX graph of `source` (not validated, not written) and the report's description of it."""
    loaded = source.loaded
    hf, adapter = loaded.model, loaded.adapter
    flat = build_decoder(hf) if loaded.task == "causal-lm" else build_encoder(getattr(hf, "base_model", hf))
    head = adapter.head(hf)
    refs = {r.name: r for r in adapter.linears(hf)} | ({head.name: head} if head is not None else {})
    unknown = set(source.layers) - set(refs)
    if unknown:
        raise EdgecError(f"layer {min(unknown)!r}: not a linear layer of this model")
    embeddings = hf.get_input_embeddings().weight
    tied = head is not None and head.module.weight.data_ptr() == embeddings.data_ptr()
    names = _state_names(flat, hf)
    embedding_name = next((n for n, t in hf.state_dict().items() if t.data_ptr() == embeddings.data_ptr()), None)
    report = OnnxExportReport(Path(), loaded.task, hf.config.model_type)
    bar = progress_counter(total=len(refs) + 2, desc="exporting to ONNX", unit="step", enabled=progress)
    with bar:
        io_spec = (graph_ops.decoder_io(hf.config.vocab_size, *kv_shape(hf.config)) if loaded.task == "causal-lm"
                   else graph_ops.encoder_io(hf.config.vocab_size))
        model = graph_ops.trace(flat, io_spec)
        graph_ops.rename_initializers(model, names)
        bar.update(1)
        specs = []
        for spec in _linear_specs(source, refs, embedding_name, tied):
            specs.append(spec)
            bar.update(1)
        lowered = graph_ops.replace_placeholders(model, specs)
        if tied and head.name in source.layers:
            report.embedding_op = graph_ops.quantize_tied_embedding(model, embedding_name, next(s for s in specs if s.name == head.name))
        graph_ops.drop_unused_initializers(model)
        graph_ops.finalize(model)
        bar.update(1)
    for spec in specs:
        layer = source.layers.get(spec.name)
        report.layers[spec.name] = {"format": spec.format, "method": layer.method if layer else "none",
                                    "sparsity": layer.sparsity if layer else 0.0, "op": lowered[spec.name].op}
    report.weight_bytes = sum(tensor_bytes(t) for t in model.graph.initializer)
    return model, report


def export_onnx(source: ExportSource, out: Path, *, verify: bool = True, progress: bool = False) -> OnnxExportReport:
    """Export `source` to the ONNX file `out`, validated in ONNX Runtime first when `verify` (module docstring)."""
    start = time.perf_counter()
    out = Path(out)
    if not out.parent.is_dir():
        raise EdgecError(f"output folder {out.parent} does not exist")
    beside = files_beside_model(source.loaded)
    if out.name in beside:
        raise EdgecError(f"output {out}: {out.name} is the name of a file written beside the model; choose another name")
    check_beside(out.parent, beside)  # before the graph is built: refusing later would waste the work
    model, report = build_model(source, progress)
    report.path = out
    report.beside = list(beside)
    report.external_data = report.weight_bytes > SINGLE_FILE_LIMIT
    with staged(out, report.external_data, beside) as stage:
        for key, value in _metadata(source, report).items():
            model.metadata_props.add(key=key, value=value)
        save(model, stage)
        del model  # the session reads the file; no second copy of the weights in memory
        if verify:
            if progress:
                print("validating in ONNX Runtime (CPUExecutionProvider)", file=sys.stderr)
            report.validation = _validate(source, stage.model)
            set_metadata(stage.model, _metadata(source, report))
        report.file_bytes = sum(path.stat().st_size for path in stage.model_files())
    report.seconds = time.perf_counter() - start
    return report


def _validate(source: ExportSource, model_path: Path) -> Validation:
    loaded = source.loaded
    hf = loaded.model
    sess = session(str(model_path))
    if loaded.task == "causal-lm":
        result = validate_decoder(sess, hf, loaded.tokenizer, kv_shape(hf.config))
    else:
        result = validate_encoder(sess, hf, loaded.tokenizer)
    del sess
    rel = result.max_abs_diff / max(result.reference_scale, 1e-6)
    if (result.mean_kl is not None and not result.mean_kl <= MAX_MEAN_KL) or not rel <= MAX_REL_DIFF:
        kl = f"mean KL {result.mean_kl:.3g} (limit {MAX_MEAN_KL:g}), " if result.mean_kl is not None else ""
        raise EdgecError(f"ONNX validation failed: {kl}max |difference| {result.max_abs_diff:.3g} "
                         f"({rel:.3g} of the largest value, limit {MAX_REL_DIFF:g}) against the torch model")
    return result
