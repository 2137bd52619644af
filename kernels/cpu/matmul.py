"""`linear`: y = x @ W^T for a prepared weight, on the compiled kernels."""

from __future__ import annotations

import numpy as np

from edgec.kernels.cpu.conversion import PreparedWeight
from edgec.kernels.cpu.extension import extension

# accuracy -> the extension's mode
MODES = {"exact": 0, "int8": 1}
"""accuracy -> the extension's mode number (also what the fused decoder takes)."""


def linear(prepared: PreparedWeight, x: np.ndarray, out: np.ndarray | None = None,
           accuracy: str = "exact") -> np.ndarray:
    """y = x @ W^T for x float32 (M, K); returns out (M, N), allocated if not given.

    accuracy="exact" (the default) computes with W dequantized exactly as the format's
    numpy reference does, accumulating in float32: the result equals
    ``x @ fmt.dequantize(packed, shape).T`` up to summation order.

    accuracy="int8" quantizes each x row per block of 32 inputs to int8 and uses integer
    dot products, for int4 (symmetric or asym) and int8 weights, at any M (a tiled kernel
    above 4 rows, on AVX2 CPUs); other weights, and many rows on the portable level or of
    int8 weights without AVX-VNNI, fall back to the exact path. Its error is bounded by
    ||W_n|| * ||x - dequantized(x)|| (see kernels/cpu/q8.h).

    x rows must be contiguous (row stride free); out must be C-contiguous and must not
    overlap x. Wrong dtypes raise TypeError, wrong shapes ValueError.
    """
    mode = MODES.get(accuracy)
    if mode is None:
        raise ValueError(f"accuracy must be one of {sorted(MODES)}, got {accuracy!r}")
    if mode == 1 and not prepared.int8_activations:
        mode = 0
    if out is None:
        out = np.empty((len(x), prepared.shape[0]), dtype=np.float32)
    extension().linear(prepared.handle, x, out, mode)
    return out
