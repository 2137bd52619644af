"""The integer decode GEMV (edgec.kernels.triton.gemv_ints): x's byte planes, the byte dot product, and the
whole product over a wide range of inputs, in Triton's interpreter; its DP4A in the SASS compiled for sm_89/sm_90."""

from __future__ import annotations

import numpy as np
import pytest
from compiled_loops import loop_opcodes

from edgec.core.formats import parse_format
from edgec.kernels import triton as tk

pytestmark = pytest.mark.skipif(not tk.available(), reason=f"{tk.unavailable_reason()}")

if tk.available():
    import triton
    import triton.language as tl

    from edgec.kernels.triton.gemv_ints import dot4

    @triton.jit
    def _dot4_of(codes_ptr, x_ptr, out_ptr, SIGNED_CODES: tl.constexpr, SIGNED_X: tl.constexpr):
        i = tl.arange(0, 64)
        total = dot4(tl.load(codes_ptr + i).to(tl.uint32, bitcast=True), tl.load(x_ptr + i), tl.load(out_ptr + i),
                     SIGNED_CODES, SIGNED_X, False)
        tl.store(out_ptr + i, total)


def _column(bits: int, vector: int, byte: int) -> int:
    """The value of its word that byte `byte` of byte vector `vector` holds (the module docstring's layout)."""
    if bits == 4:
        return 2 * byte + vector
    if bits == 2:
        return 4 * byte + vector
    return 4 * byte + 2 * (vector % 2) + vector // 2


@pytest.mark.parametrize("name", ["int4:g128", "int3:g128:asym", "int2:g64"])
def test_x_splits_into_three_byte_planes_per_chunk(name):
    """Each chunk's x, times 2^s, is X0 + X1/256 + X2/65536 to within 2^-17 (2^-16 where the top value is
    clamped) with |x·2^s| < 128 at the chunk's largest value; the plane words hold those bytes where the codes they
    meet sit; the position sums and, for asymmetric codes, the x sums add up; a chunk holding a NaN gets a NaN
    factor."""
    import torch

    from edgec.kernels.triton.gemv_ints import split_chunks

    fmt = parse_format(name)
    k = 512
    weight = tk.prepare(fmt, fmt.quantize(np.ones((4, k), dtype=np.float32)), (4, k))
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((2, k)) * 10.0 ** rng.uniform(-3, 3, (2, k))).astype(np.float32)
    x[1, 300] = np.nan
    planes, positions, factors, sums = (t.numpy() for t in split_chunks(weight, torch.from_numpy(x)))
    words = weight.words
    per_word = 16 if weight.bits == 3 else 32 // weight.bits
    chunk = per_word * words
    as_bytes = planes.view(np.uint8).reshape(planes.shape + (4,)).astype(np.int64)  # [m, c, plane, vector, word, b]
    as_bytes[:, :, 0] = np.where(as_bytes[:, :, 0] > 127, as_bytes[:, :, 0] - 256, as_bytes[:, :, 0])
    held = as_bytes[:, :, 0] + as_bytes[:, :, 1] / 256 + as_bytes[:, :, 2] / 65536
    for m in range(2):
        for c in range(k // chunk):
            columns = x[m, c * chunk:(c + 1) * chunk]
            if np.isnan(columns).any():
                assert np.isnan(factors[m, c])
                continue
            scaled = columns.astype(np.float64) / (factors[m, c] * 65536.0)
            assert np.abs(scaled).max() < 128 and np.abs(scaled).max() >= 32
            expected = np.empty(held.shape[2:], dtype=np.float64)  # [vector, word, byte]
            for v in range(per_word // 4):
                for b in range(4):
                    expected[v, :, b] = scaled[_column(weight.bits, v, b) * words + np.arange(words)]
            assert np.abs(held[m, c] - expected).max() <= 2.0 ** -17 * (1 + (np.abs(scaled).max() > 128 - 2.0 ** -16))
            combined = as_bytes[m, c, 0] * 65536 + as_bytes[m, c, 1] * 256 + as_bytes[m, c, 2]
            assert np.array_equal(positions[m, c], combined.sum(axis=(0, 2)))
            if weight.asym:
                assert sums[m, c] == pytest.approx(columns.sum(dtype=np.float64), rel=1e-6)


@pytest.mark.parametrize("signed_codes,signed_x", [(False, True), (False, False), (True, True), (True, False)])
def test_the_byte_dot_product_adds_four_byte_products(signed_codes, signed_x):
    """`dot4` (the interpreter's form of the DP4A): code bytes times x bytes, each signed or not, plus the
    accumulator, in int32."""
    import torch

    rng = np.random.default_rng(2 * signed_codes + signed_x)
    codes = rng.integers(0, 256, (64, 4), dtype=np.uint8)
    xs = rng.integers(0, 256, (64, 4), dtype=np.uint8)
    acc = rng.integers(-2 ** 20, 2 ** 20, 64).astype(np.int32)
    out = torch.from_numpy(acc.copy())
    _dot4_of[(1,)](torch.from_numpy(codes.view(np.int32).ravel()), torch.from_numpy(xs.view(np.int32).ravel()), out,
                   SIGNED_CODES=signed_codes, SIGNED_X=signed_x)
    code_values = codes.view(np.int8) if signed_codes else codes
    x_values = xs.view(np.int8) if signed_x else xs
    assert np.array_equal(out.numpy(), acc + (code_values.astype(np.int64) * x_values).sum(axis=1))


def test_the_integer_path_holds_each_chunk_to_23_bits_of_its_largest_input():
    """Inputs from 1e-6 to 1e4 (between chunks and within them), against a float64 product of the same dequantized
    weights: the error stays within what 23 bits below each chunk's largest |x|, and float32 accumulation, allow."""
    import torch

    rng = np.random.default_rng(7)
    x = (rng.standard_normal((3, 1024)) * 10.0 ** rng.uniform(-6, 4, (3, 1024))).astype(np.float32)
    for name in ("int4:g128", "int3:g128:asym", "int2:g64", "int4:g32:asym"):
        fmt = parse_format(name)
        packed = fmt.quantize(rng.standard_normal((40, 1024)).astype(np.float32))
        w = fmt.dequantize(packed, (40, 1024)).astype(np.float64)
        weight = tk.prepare(fmt, packed, (40, 1024))
        assert weight.kind == 4 and weight.words
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        chunk = (16 if weight.bits == 3 else 32 // weight.bits) * weight.words
        largest = np.repeat(np.abs(x).reshape(3, -1, chunk).max(axis=2), chunk, axis=1)
        bound = (largest @ np.abs(w).T) * 2.0 ** -22 + (np.abs(x) @ np.abs(w).T) * 2.0 ** -20
        assert (np.abs(got - x @ w.T) <= bound).all(), name


def test_the_compiled_loop_takes_one_dp4a_per_four_codes_and_plane():
    """On a GPU `dot4` is the DP4A: the main loop of the int4 GEMV, compiled for sm_89 and sm_90, issues 6 IDP per
    word of 8 codes (2 byte vectors, 3 planes)."""
    counts = loop_opcodes("int4", False, "_gemv_ints", ("IDP",))
    assert sorted(counts) == [89, 90]
    for words, idp in counts.values():
        assert idp == 6 * words
