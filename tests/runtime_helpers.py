"""Helpers for runtime tests: export a model to `.edgec`, and its transformers twin holding the file's weights."""

from __future__ import annotations

import torch

from edgec.commands.compression_options import CompressionOptions, run_compression
from edgec.export_sources import source_from_result
from edgec.exporters.edgec_export import export_edgec
from edgec.models.loading import load_model
from edgec.runtime.container import open_container

PROMPT = "It is a truth universally acknowledged, that a single man in possession"


def export(model_dir, out, fmt: str | None, include_head: bool = False):
    loaded = load_model(model_dir)
    result = None
    if fmt is not None:
        options = CompressionOptions(fmt, None, "rtn", None, include_head, 1, 2, True, 0.01, False, 0.5)
        result = run_compression(loaded, options, None).result
    export_edgec(source_from_result(loaded, result), out)
    return out


def transformers_twin(model_spec, path):
    """The HF model with exactly the weights stored in the file (dequantized), to compare logits with."""
    loaded = load_model(model_spec)
    model = loaded.model
    transposed = {f"{ref.name}.weight" for ref in loaded.adapter.linears(model) if ref.transposed}  # GPT-2's Conv1D
    state = model.state_dict()
    with open_container(path) as f:
        for name, tensor in state.items():
            if tensor.is_floating_point():
                value = f.dequantize(name)
                state[name] = torch.from_numpy(value.T.copy() if name in transposed else value.reshape(tensor.shape))
    model.load_state_dict(state)
    return model
