"""Building the exporters' `ExportSource`: from a compression done in this process, or from a folder
`edgec compress` wrote. The torch model of either computes what the compressed model computes:
dequantized weights, and W8A8 layers' activations quantized (`edgec.activation_quant`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open

from edgec.activation_quant import attach_activation_quant
from edgec.assignment import quantizable
from edgec.compress import CompressionResult
from edgec.compressed_manifest import PACKED, read_manifest
from edgec.core.container_layout import EXTRA_BUFFERS  # optional per-layer buffers besides the format's own
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.core.layer_input import ActivationQuant
from edgec.exporters.source import ExportLayer, ExportSource
from edgec.models.loading import LoadedModel, load_model
from edgec.planner.plan_schema import Plan, plan_json


def source_from_result(loaded: LoadedModel, result: CompressionResult | None, plan: Plan | None = None,
                       calibration: dict | None = None) -> ExportSource:
    """An export source for a model compressed in this process (or not compressed, result None); the
    exporters take the plan as the JSON they embed."""
    layers: dict[str, ExportLayer] = {}
    if result is not None and result.layers:
        refs = quantizable(loaded.model, loaded.adapter, include_head=loaded.adapter.head(loaded.model) is not None)
        for name, layer in result.layers.items():
            shape = refs[name].shape

            def packed(layer=layer, shape=shape) -> dict[str, np.ndarray]:
                out = dict(layer.packed)
                if layer.input_scale is not None:
                    out["input_scale"] = np.asarray(layer.input_scale, dtype=np.float32)
                if layer.act_scale is not None:
                    out["act_scale"] = np.array([layer.act_scale], dtype=np.float32)
                return out

            extras = tuple(b for b, value in zip(EXTRA_BUFFERS, (layer.input_scale, layer.act_scale)) if value is not None)
            layers[name] = ExportLayer(name, layer.config.format, layer.config.method, layer.config.sparsity, shape, packed,
                                       extras)
    _quantize_activations(loaded, result)
    return ExportSource(loaded, layers, None if plan is None else plan_json(plan), calibration, loaded.name,
                        loaded.weights_hash)


def _quantize_activations(loaded: LoadedModel, result: CompressionResult | None) -> None:
    """Make the torch model quantize the inputs of W8A8 layers, as the compressed model does (a model
    loaded from a compressed folder already does)."""
    scales = {name: ActivationQuant(float(layer.act_scale), layer.config.format, layer.input_scale)
              for name, layer in (result.layers if result else {}).items()
              if layer.act_scale is not None and not loaded.model.get_submodule(name)._forward_pre_hooks}
    if scales:
        attach_activation_quant(loaded.model, scales)


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
