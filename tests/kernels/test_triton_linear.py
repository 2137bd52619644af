"""The Triton kernels (edgec.kernels.triton) against the format library's numpy reference, in Triton's interpreter.

Tolerances, per path: decode-sized inputs (M < 16) accumulate float32 products of the exactly
decoded weights: |y - x W^T| <= 1e-5 * (|x| |W|^T). Larger M multiplies float16-rounded
operands (2^-11 relative each) with float32 accumulation: <= 2e-3 * (|x| |W|^T), for every
format (bf16 weights multiply as float32 there).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.core.formats import parse_format
from edgec.kernels import triton as tk

pytestmark = pytest.mark.skipif(not tk.available(), reason=f"{tk.unavailable_reason()}")

FORMATS = ([f"int{b}:g{g}{a}" for b in (4, 3, 2) for g in (32, 64, 128, 256) for a in ("", ":asym")]
           + ["int8", "nf4:g64", "nf4:g32", "fp8", "fp16", "bf16", "2:4", "2:4+int4:g32", "2:4+int8", "2:4+nf4:g64"])
SHAPES = [(37, 200), (5, 52)]  # N, K not multiples of a block, K of a group (200 = 3 * 64 + 8), K of 8 (52)
MS = (1, 3, 13, 67)


def _weights(shape, seed=0):
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.05
    w[0, :3] = [0.9, -1.3, 3.0]  # outliers
    return w


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_kernels_match_the_numpy_reference(fmt, shape):
    import torch

    fmt = parse_format(fmt)
    packed = fmt.quantize(_weights(shape))
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    rng = np.random.default_rng(1)
    for m in MS:
        x = rng.standard_normal((m, shape[1])).astype(np.float32)
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        scale = np.abs(x) @ np.abs(w).T
        tol = 1e-5 if m < 16 else 2e-3
        assert got.shape == (m, shape[0])
        assert (np.abs(got - x @ w.T) <= tol * scale + 1e-30).all(), (str(fmt), m)


def test_fp8_nan_codes_propagate():
    import torch

    fmt, shape = parse_format("fp8"), (3, 32)
    packed = fmt.quantize(_weights(shape))
    packed["qdata"] = packed["qdata"].copy()
    packed["qdata"][1, 5] = 0x7F  # NaN
    y = tk.linear(tk.prepare(fmt, packed, shape), torch.ones((1, 32))).numpy()
    assert np.isnan(y[0, 1]) and np.isfinite(y[0, [0, 2]]).all()


def test_bad_arguments_are_named():
    import torch

    fmt, shape = parse_format("int4:g32"), (8, 64)
    weight = tk.prepare(fmt, fmt.quantize(_weights(shape)), shape)
    with pytest.raises(ValueError, match=r"shape \(M, 64\)"):
        tk.linear(weight, torch.ones((2, 63)))
    with pytest.raises(TypeError, match="floating-point torch tensor"):
        tk.linear(weight, np.ones((2, 64), np.float32))
    with pytest.raises(ValueError, match="contiguous float32"):
        tk.linear(weight, torch.ones((2, 64)), out=torch.empty((2, 9)))
    from edgec.core.errors import FormatError

    with pytest.raises(FormatError, match="scale"):
        tk.prepare(fmt, {"qdata": fmt.quantize(_weights(shape))["qdata"]}, shape)
