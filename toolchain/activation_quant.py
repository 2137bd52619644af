"""The input path of W8A8 layers in a torch model (`edgec.core.layer_input`, in torch).

A runtime running a SmoothQuant model quantizes each linear's input to int8 or fp8 with
the scale recorded at compression. Evaluating in torch does the same through a forward
pre-hook, so perplexity reflects the 8-bit activations. A layer that also keeps an unfolded
input scale s has diag(s)⁻¹ folded into its torch weight, so its hook quantizes x / s and
multiplies back by s: the product is then exactly layer_input(x) @ Q^T.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgec.core.formats import Format
from edgec.core.formats.fp8 import FP8
from edgec.core.layer_input import FP8_MAX, INT8_MAX, ActivationQuant


def quantize_activation(x: torch.Tensor, scale: float, fmt: Format) -> torch.Tensor:
    """x rounded to the 8-bit grid of `fmt` (int8 or fp8 e4m3fn) under a per-tensor scale."""
    if isinstance(fmt, FP8):
        return (x / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(x.dtype) * scale
    return (x / scale).round().clamp(-INT8_MAX, INT8_MAX) * scale


def _hook(quant: ActivationQuant):
    if quant.input_scale is None:
        return lambda module, args: (quantize_activation(args[0], quant.scale, quant.format), *args[1:])
    s = torch.from_numpy(np.asarray(quant.input_scale, dtype=np.float32))
    return lambda module, args: (quantize_activation(args[0] / s.to(args[0]), quant.scale, quant.format) * s.to(args[0]),
                                 *args[1:])


def attach_activation_quant(model: nn.Module, quants: dict[str, ActivationQuant]) -> list:
    """Quantize the inputs of the named linears; returns the hook handles."""
    return [model.get_submodule(name).register_forward_pre_hook(_hook(quant)) for name, quant in quants.items()]
