"""ONNX Runtime's own int4 quantization of an fp32 export: the baseline edgec's exports are measured against.

`ort_int4_baseline` runs `onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`
(round-to-nearest, QOperator format: every MatMul with a constant weight becomes a
MatMulNBits) over an uncompressed edgec export. The tied head of an edgec export is a
Gemm on the embedding, which the quantizer leaves alone, as edgec keeps the head by default.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import onnx

from edgec.core.errors import EdgecError
from edgec.exporters.onnx_files import save, staged

BASELINE_KEY = "edgec.baseline"


def ort_int4_baseline(fp32_model: str | Path, out: str | Path, *, block_size: int = 128, symmetric: bool = True,
                      accuracy_level: int | None = None) -> Path:
    """Quantize the MatMul weights of an fp32 ONNX model to int4 with ONNX Runtime's quantizer; write `out` atomically."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    fp32_model, out = Path(fp32_model), Path(out)
    model = onnx.load(str(fp32_model))
    layers = json.loads({p.key: p.value for p in model.metadata_props}.get("edgec.layers", "{}"))
    if not layers or any(entry["format"] != "fp32" for entry in layers.values()):
        raise EdgecError(f"{fp32_model}: not an uncompressed (fp32) edgec export")
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=symmetric,
                                     accuracy_level=accuracy_level)
    quantizer.process()
    result = quantizer.model.model
    kept = [(p.key, p.value) for p in result.metadata_props if not p.key.startswith("edgec.")]
    del result.metadata_props[:]
    what = (f"onnxruntime MatMulNBitsQuantizer: int4, block_size {block_size}, "
            f"{'symmetric' if symmetric else 'asymmetric'}, from {fp32_model.name}")
    for key, value in [*kept, (BASELINE_KEY, what)]:
        result.metadata_props.add(key=key, value=value)
    with staged(out) as stage:
        save(result, stage)
    return out
