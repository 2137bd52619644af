"""Reading what `edgec compress` wrote: the manifest and the recorded activation scales.

Kept apart from the writer (`edgec.compressed_io`) so that model loading can read a
compressed folder without importing the compression machinery.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.numpy import load_file

from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.core.layer_input import ActivationQuant

MANIFEST = "edgec-compression.json"
PACKED = "packed.safetensors"
MANIFEST_VERSION = 1


def read_manifest(folder: Path) -> dict | None:
    """The compression manifest of a model folder, or None if it was not written by edgec compress."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EdgecError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise EdgecError(f"{path}: unsupported manifest version {manifest.get('version')!r}")
    return manifest


def activation_scales(folder: Path) -> dict[str, ActivationQuant]:
    """Layer -> how its input is quantized, for a compressed folder's W8A8 layers."""
    manifest = read_manifest(folder)
    if manifest is None:
        return {}
    packed = load_file(str(Path(folder) / PACKED))
    return {name: ActivationQuant(float(packed[f"{name}::act_scale"][0]), parse_format(entry["format"]),
                                  packed.get(f"{name}::input_scale"))
            for name, entry in manifest["layers"].items() if f"{name}::act_scale" in packed}
