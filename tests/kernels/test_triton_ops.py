"""The Triton small ops and attention (edgec.kernels.triton.ops) against the numpy executor's steps, in the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.kernels import triton as tk
from edgec.runtime.executors.common import attention, rms_norm, silu
from edgec.runtime.model_config import model_config
from edgec.runtime.rope import Rotary

pytestmark = pytest.mark.skipif(not tk.available(), reason=f"{tk.unavailable_reason()}")
RNG = np.random.default_rng(0)


def _t(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def test_rms_norm_and_swiglu():
    from edgec.kernels.triton import ops

    x, w = RNG.standard_normal((5, 3, 72)), RNG.standard_normal(72)
    np.testing.assert_allclose(ops.rms_norm(_t(x), _t(w), 1e-5).numpy(), rms_norm(x.astype(np.float32), w.astype(np.float32), 1e-5),
                               rtol=1e-5, atol=1e-6)
    g, u = (RNG.standard_normal(3000) * 30).astype(np.float32), RNG.standard_normal(3000).astype(np.float32)
    expected, flushed = silu(g) * u, g < -60
    got = ops.silu_mul_(_t(g), _t(u)).numpy()  # in place: g now holds the result
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-30)
    assert (got[flushed] == 0).all()


def test_rotary_positions():
    from edgec.kernels.triton import ops

    config = model_config("llama", {"vocab_size": 10, "hidden_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
                                    "intermediate_size": 16, "rms_norm_eps": 1e-5, "rope_theta": 500.0})
    rotary = Rotary(config, 64)
    x = RNG.standard_normal((3, 2, 24)).astype(np.float32)
    expected = rotary.apply(x, slice(40, 43))
    np.testing.assert_allclose(ops.rope_(_t(x), _t(rotary.cos), _t(rotary.sin), 40).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("t, start, window, hd", [
    (1, 0, 0, 20), (1, 70, 0, 20), (1, 40, 8, 20),  # decode: one program per head
    (13, 29, 0, 20), (5, 40, 8, 20), (3, 2, 16, 20), (2, 0, 0, 20),  # tiled, one query block
    (67, 0, 0, 64), (40, 5, 8, 20), (33, 100, 0, 20), (70, 3, 24, 64),  # several query and key blocks
])
def test_attention_matches_the_executor(t, start, window, hd):
    """Decode runs the per-head kernel, prompts the tiled one: rows whose window starts past the
    first key block, query blocks cut by the prompt's end, head_dim not a power of two."""
    from edgec.kernels.triton import ops

    heads, kv_heads = 6, 2  # grouped queries
    q = RNG.standard_normal((t, heads, hd)).astype(np.float32)
    k, v = (RNG.standard_normal((start + t, kv_heads, hd)).astype(np.float32) for _ in range(2))
    expected = attention(q, k, v, start, window=window or None)
    np.testing.assert_allclose(ops.attention(_t(q), _t(k), _t(v), start, window).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("start, window", [(0, 0), (255, 0), (256, 0), (700, 0), (1000, 300), (900, 40), (600, 256)])
def test_split_decode_attention_over_a_whole_cache_matches_the_executor(start, window):
    """A decode query over a cache buffer longer than one span (flash decoding): the position inside the first span,
    at a span's edge, several spans, a window that starts spans in or inside the last span. Rows past the
    position hold garbage that must not be read."""
    from edgec.kernels.triton import ops

    heads, kv_heads, hd, context = 6, 2, 20, 1100
    assert context > ops.DECODE_SPAN
    q = RNG.standard_normal((1, heads, hd)).astype(np.float32)
    k, v = (RNG.standard_normal((context, kv_heads, hd)).astype(np.float32) for _ in range(2))
    expected = attention(q, k[: start + 1], v[: start + 1], start, window=window or None)
    k[start + 1:], v[start + 1:] = np.nan, np.nan
    got = ops.attention(_t(q), _t(k), _t(v), ops.position_tensor(start, "cpu"), window).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
