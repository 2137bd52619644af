"""A linear layer's input path, written once: what happens to x before the matmul.

    y = layer_input(x) @ W^T (+ bias), where layer_input(x) is
    1. x / input_scale, per input feature, when the layer keeps an input scale s that could
       not be folded into the op before it (AWQ, SmoothQuant): the stored weight is Q(W·diag(s));
    2. then, for W8A8 layers, rounded to the 8-bit grid of the layer's format (int8: round half
       to even, clamped to ±127; fp8: e4m3fn, saturating at ±448) under the static per-tensor
       act_scale, which calibration measured on the output of step 1.

This numpy function is the definition. The reference and cpu backends call it; the Triton
decoder (torch on the device), the toolchain's torch model (`edgec.activation_quant`, whose
weights have diag(s)⁻¹ folded in) and the ONNX lowering implement the same steps and are
tested against it on a layer that has both an input scale and quantized activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.formats import Format
from edgec.core.formats.fp8 import FP8, e4m3fn_to_float32, float32_to_e4m3fn

FP8_MAX = 448.0  # largest finite e4m3fn value
INT8_MAX = 127.0  # int8 activations use ±127, never -128, so the grid is symmetric


@dataclass(frozen=True)
class ActivationQuant:
    """How one W8A8 layer's input is quantized: the static scale, the layer's format, its unfolded input scale."""

    scale: float
    format: Format
    input_scale: np.ndarray | None = None


def quantize_activation(x: np.ndarray, scale: float, fmt: Format) -> np.ndarray:
    """x rounded to the 8-bit grid of the layer's format (int8, or fp8 e4m3fn) under a static per-tensor scale."""
    if isinstance(fmt, FP8):
        return e4m3fn_to_float32(float32_to_e4m3fn(np.clip(x / scale, -FP8_MAX, FP8_MAX))) * np.float32(scale)
    return np.clip(np.rint(x / scale), -INT8_MAX, INT8_MAX).astype(np.float32) * np.float32(scale)


def layer_input(x: np.ndarray, input_scale: np.ndarray | None, act_scale: float | None,
                act_format: Format | None) -> np.ndarray:
    """What the matmul of a layer multiplies: x divided by `input_scale`, then quantized by `act_scale` (module docstring)."""
    if input_scale is not None:
        x = x / input_scale
    if act_scale is not None:
        x = quantize_activation(x, act_scale, act_format)
    return x
