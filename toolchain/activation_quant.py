"""Fake-quantization of linear inputs with static per-tensor scales (W8A8 models in torch).

A runtime running a SmoothQuant model quantizes each linear's input to int8 or fp8
with the scale recorded at compression. Evaluating in torch does the same through a
forward pre-hook, so perplexity reflects the 8-bit activations.
"""

from __future__ import annotations

import torch
from torch import nn

from edgec.core.formats import Format
from edgec.core.formats.fp8 import FP8


def quantize_activation(x: torch.Tensor, scale: float, fmt: Format) -> torch.Tensor:
    """x rounded to the 8-bit grid of `fmt` (int8 or fp8 e4m3fn) under a per-tensor scale."""
    if isinstance(fmt, FP8):
        return (x / scale).clamp(-448, 448).to(torch.float8_e4m3fn).to(x.dtype) * scale
    return (x / scale).round().clamp(-127, 127) * scale


def attach_activation_quant(model: nn.Module, scales: dict[str, tuple[float, Format]]) -> list:
    """Quantize the inputs of the named linears; returns the hook handles."""
    handles = []
    for name, (scale, fmt) in scales.items():
        module = model.get_submodule(name)
        handles.append(module.register_forward_pre_hook(
            lambda m, args, s=scale, f=fmt: (quantize_activation(args[0], s, f), *args[1:])))
    return handles
