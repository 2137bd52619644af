"""Helpers for runtime tests: export a model to `.edgec`, and its transformers twin holding the file's weights."""

from __future__ import annotations

import torch
from edgec.commands.compression_options import CompressionOptions, run_compression
from edgec.exporters.edgec_export import export_edgec
from edgec.exporters.source import source_from_result
from edgec.models.loading import load_model
from edgec.runtime.container import open_container

PROMPT = "It is a truth universally acknowledged, that a single man in possession"


def export(model_dir, out, fmt: str | None, include_head: bool = False):
    loaded = load_model(model_dir)
    result = None
    if fmt is not None:
        options = CompressionOptions(fmt, None, "rtn", None, include_head, 1, 2, True, 0.01, False, 0.5)
        result = run_compression(loaded, options).result
    export_edgec(source_from_result(loaded, result), out)
    return out


def transformers_twin(model_spec, path):
    """The HF model with exactly the weights stored in the file (dequantized), to compare logits with."""
    model = load_model(model_spec).model
    with open_container(path) as f:
        state = {name: torch.from_numpy(f.dequantize(name).reshape(tensor.shape))
                 for name, tensor in model.state_dict().items()}
    model.load_state_dict(state)
    return model
