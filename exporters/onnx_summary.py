"""`read_onnx_summary`: what an edgec ONNX export holds, from its metadata and initializers.

Used by `edgec inspect` for `.onnx` files. The weights themselves are not loaded
(external data stays on disk): sizes come from the tensors' shapes and types.
"""

from __future__ import annotations

import json
from math import prod
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from edgec.core.errors import EdgecError

JSON_KEYS = ("edgec.layers", "edgec.validation", "edgec.calibration", "edgec.generation")  # metadata values that are JSON
_ITEM_BYTES = {TensorProto.FLOAT: 4, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2, TensorProto.DOUBLE: 8,
               TensorProto.FLOAT8E4M3FN: 1, TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.BOOL: 1,
               TensorProto.INT16: 2, TensorProto.UINT16: 2, TensorProto.INT32: 4, TensorProto.INT64: 8}


def tensor_bytes(t: TensorProto) -> int:
    """Stored bytes of an initializer, in the file or in its external data."""
    if t.raw_data:
        return len(t.raw_data)
    return prod(t.dims) * _ITEM_BYTES.get(t.data_type, 4)


def _describe(t: TensorProto) -> dict:
    return {"name": t.name, "dtype": TensorProto.DataType.Name(t.data_type).lower(), "shape": list(t.dims),
            "bytes": tensor_bytes(t)}


def read_onnx_summary(path: str | Path) -> dict:
    """The edgec metadata of an exported ONNX file and, per layer, its op, format and stored tensors.

    Returns {"path", "file_bytes", "metadata", "layers": [{"layer", "format", "method", "sparsity",
    "op", "bytes", "tensors": [{"name", "dtype", "shape", "bytes"}]}], "other": [tensors outside the
    layers: embeddings, norms, constants], "weight_bytes"}. Refuses a file edgec did not export.
    """
    path = Path(path)
    try:
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (OSError, DecodeError, ValueError) as exc:
        raise EdgecError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if "edgec.core.version" not in meta:
        raise EdgecError(f"{path}: not an ONNX model exported by edgec (no edgec metadata)")
    for key in JSON_KEYS:
        if key in meta:
            meta[key] = json.loads(meta[key])
    layers, claimed = [], set()
    for name, entry in meta.get("edgec.layers", {}).items():
        tensors = [_describe(t) for t in model.graph.initializer if t.name.startswith(name + ".")]
        claimed.update(t["name"] for t in tensors)
        layers.append({"layer": name, **entry, "bytes": sum(t["bytes"] for t in tensors),
                       "tensors": tensors})
    other = [_describe(t) for t in model.graph.initializer if t.name not in claimed]
    return {"path": str(path), "file_bytes": path.stat().st_size, "metadata": meta, "layers": layers, "other": other,
            "weight_bytes": sum(t["bytes"] for t in other) + sum(entry["bytes"] for entry in layers)}
