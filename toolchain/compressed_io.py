"""The folder `edgec compress` writes, read by `edgec eval` and the exporters.

    OUT/
      config.json, model.safetensors, tokenizer files   a Hugging Face model folder whose
                                                        linears hold the dequantized weights
      edgec-compression.json                            manifest (below)
      packed.safetensors                                every compressed linear's stored buffers,
                                                        keyed "<layer>::<buffer>", exactly as
                                                        Format.buffers() lists them, plus
                                                        "<layer>::input_scale" float32 (K,) for a
                                                        layer whose inputs must be divided by it,
                                                        "<layer>::act_scale" float32 (1,): the static
                                                        scale its input is quantized with (W8A8)

Manifest: {"version": 1, "edgec_version", "source": {"name", "weights_sha256"},
"calibration": {"text", "samples", "seq_len", "tokens"} or null,
"layers": {name: {"format", "method", "sparsity"}}, "plan": the plan file followed, or null}.

The folder is written under a temporary name beside OUT and renamed at the end, so
a failed or interrupted run leaves no partial output. `edgec compress` compresses inside
that temporary: the packed results are spilled to `SPILL` in it as they are made
(`edgec.compress.compress`), written into packed.safetensors from there, and the spill
folder removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from edgec.compress import CalibrationSettings, CompressionResult
from edgec.compressed_manifest import MANIFEST, MANIFEST_VERSION, PACKED
from edgec.core.errors import EdgecError
from edgec.core.output_files import atomic_output
from edgec.core.version import __version__
from edgec.data import CALIBRATION_NAME
from edgec.models.loading import LoadedModel
from edgec.planner.plan_schema import Plan, plan_json


def check_output_path(out: Path) -> None:
    """Refuse an existing output path before any work is done."""
    if out.exists():
        raise EdgecError(f"output {out} already exists; remove it or choose another path")
    if not out.parent.exists():
        raise EdgecError(f"output folder's parent {out.parent} does not exist")


def calibration_record(result: CompressionResult, calibration: CalibrationSettings | None) -> dict | None:
    """What calibration a compression used, as the manifest and the exporters record it (None if none)."""
    if not result.calibration_tokens:
        return None
    return {
        "text": CALIBRATION_NAME if calibration is None or calibration.text is None else "user text",
        "samples": calibration.samples if calibration else None,
        "seq_len": calibration.seq_len if calibration else None,
        "tokens": result.calibration_tokens,
    }


SPILL = ".packed-staging"


def save_compressed(loaded: LoadedModel, result: CompressionResult, out: Path,
                    calibration: CalibrationSettings | None, plan: Plan | None = None) -> None:
    """Write the compressed model folder atomically (see the module docstring)."""
    check_output_path(out)
    with atomic_output(out, folder=True) as tmp:
        write_compressed(loaded, result, tmp, calibration, plan)


def write_compressed(loaded: LoadedModel, result: CompressionResult, folder: Path,
                     calibration: CalibrationSettings | None, plan: Plan | None = None) -> None:
    """Write the compressed model's files into `folder` (an `atomic_output` temporary), removing its spill folder
    once the packed results it holds are written."""
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    packed: dict[str, np.ndarray] = {}
    for name, layer in result.layers.items():
        for buffer, array in layer.packed.items():
            packed[f"{name}::{buffer}"] = np.ascontiguousarray(array)
        if layer.input_scale is not None:
            packed[f"{name}::input_scale"] = layer.input_scale.astype(np.float32)
        if layer.act_scale is not None:
            packed[f"{name}::act_scale"] = np.array([layer.act_scale], dtype=np.float32)
    save_file(packed, str(folder / PACKED))
    manifest = {
        "version": MANIFEST_VERSION,
        "edgec_version": __version__,
        "source": {"name": loaded.name, "weights_sha256": loaded.weights_hash},
        "calibration": calibration_record(result, calibration),
        "layers": {name: {"format": str(layer.config.format), "method": layer.config.method,
                          "sparsity": layer.config.sparsity} for name, layer in result.layers.items()},
        "plan": None if plan is None else plan_json(plan),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(folder / SPILL, ignore_errors=True)  # maps into it stay readable until they are dropped
