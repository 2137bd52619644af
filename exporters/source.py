"""What the exporters read: a model with, per compressed linear, its format and stored buffers.

Both exporters take an `ExportSource`, built either from a folder `edgec compress`
wrote (`source_from_folder`) or from a compression done in this process
(`source_from_result`). The torch model in `loaded` holds the dequantized weights
(what the compressed model computes with); each `ExportLayer` yields its packed
buffers on demand, so an exporter can stream layer by layer without a second copy
of the model in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open

from edgec.compress import CompressionResult
from edgec.compressed_manifest import PACKED, read_manifest
from edgec.errors import EdgecError
from edgec.models.loading import LoadedModel, load_model
from edgec.runtime.container.layout import EXTRA_BUFFERS  # optional per-layer buffers besides the format's own
from edgec.runtime.formats import Format, parse_format



@dataclass
class ExportLayer:
    """One compressed linear.

    `packed()` returns the buffers `format.buffers(shape)` lists, plus `input_scale`
    float32 (K,) when the layer's input is divided by it (SmoothQuant not folded) and
    `act_scale` float32 (1,) when its input is quantized with a static scale (W8A8).
    """

    name: str  # module name, e.g. "model.layers.0.mlp.down_proj"; its weight tensor is name + ".weight"
    format: Format
    method: str
    sparsity: float
    shape: tuple[int, int]  # (N, K): output features, input features
    packed: Callable[[], dict[str, np.ndarray]]
    extras: tuple[str, ...] = ()  # which of EXTRA_BUFFERS packed() also returns, in that order


@dataclass
class ExportSource:
    """A model to export: the torch model, its compressed layers, and where it came from."""

    loaded: LoadedModel
    layers: dict[str, ExportLayer]
    plan: dict | None = None  # the plan file the compression followed, if any
    calibration: dict | None = None  # the manifest's calibration record, if any
    source_name: str = ""  # the original (uncompressed) model's name and weights hash
    source_hash: str = ""


def source_from_result(loaded: LoadedModel, result: CompressionResult | None, plan: dict | None = None,
                       calibration: dict | None = None) -> ExportSource:
    """An export source for a model compressed in this process (or not compressed, result None)."""
    from edgec.assignment import quantizable

    layers: dict[str, ExportLayer] = {}
    if result is not None and result.layers:
        refs = quantizable(loaded.model, loaded.adapter, include_head=loaded.adapter.head(loaded.model) is not None)
        for name, layer in result.layers.items():
            shape = refs[name].shape

            def packed(layer=layer, shape=shape) -> dict[str, np.ndarray]:
                out = dict(layer.config.format.pack(layer.encoded, shape))
                if layer.input_scale is not None:
                    out["input_scale"] = np.asarray(layer.input_scale, dtype=np.float32)
                if layer.act_scale is not None:
                    out["act_scale"] = np.array([layer.act_scale], dtype=np.float32)
                return out

            extras = tuple(b for b, value in zip(EXTRA_BUFFERS, (layer.input_scale, layer.act_scale)) if value is not None)
            layers[name] = ExportLayer(name, layer.config.format, layer.config.method, layer.config.sparsity, shape, packed,
                                       extras)
    return ExportSource(loaded, layers, plan, calibration, loaded.name, loaded.weights_hash)


def source_from_folder(folder: Path) -> ExportSource:
    """An export source for a folder written by `edgec compress`; refuses any other folder."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise EdgecError(f"{folder}: not a folder written by `edgec compress` (no edgec-compression.json)")
    packed_path = folder / PACKED
    if not packed_path.is_file():
        raise EdgecError(f"{packed_path}: missing; the compressed folder is incomplete")
    loaded = load_model(folder)
    from edgec.assignment import quantizable

    refs = quantizable(loaded.model, loaded.adapter, include_head=loaded.adapter.head(loaded.model) is not None)
    with safe_open(str(packed_path), framework="numpy") as handle:
        keys = set(handle.keys())
    layers: dict[str, ExportLayer] = {}
    for name, entry in manifest["layers"].items():
        if name not in refs:
            raise EdgecError(f"{folder}: the manifest names layer {name!r}, which the model does not have")
        fmt = parse_format(entry["format"])
        wanted = [b.name for b in fmt.buffers(refs[name].shape)]
        missing = [b for b in wanted if f"{name}::{b}" not in keys]
        if missing:
            raise EdgecError(f"{packed_path}: layer {name!r} lacks buffer(s) {', '.join(missing)} of format {fmt}")
        extras = tuple(b for b in EXTRA_BUFFERS if f"{name}::{b}" in keys)
        names = wanted + list(extras)

        def packed(name=name, names=names) -> dict[str, np.ndarray]:
            with safe_open(str(packed_path), framework="numpy") as handle:
                return {b: handle.get_tensor(f"{name}::{b}") for b in names}

        layers[name] = ExportLayer(name, fmt, entry["method"], float(entry.get("sparsity") or 0.0), refs[name].shape, packed,
                                   extras)
    source = manifest.get("source") or {}
    return ExportSource(loaded, layers, manifest.get("plan"), manifest.get("calibration"),
                        source.get("name", loaded.name), source.get("weights_sha256", ""))
