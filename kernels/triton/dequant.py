"""Decoding a tile of a stored weight to float32 inside a Triton kernel, for every storage kind.

KIND (a constexpr) selects the decoder; the bit layouts are those of kernels/cpu/weight.h:

    0 f16    two bytes per value                          w = half(bits)
    1 bf16   two bytes per value                          w = float(bits << 16)
    2 fp8    one e4m3fn code per value, scale per row     w = table[code] * s
    3 int8   one signed byte per value, scale per row     w = q * s
    4 intB   B-bit codes, a little-endian bit stream      w = (c - 2^(B-1)) * s_g, or c * s_g + min_g (ASYM)
             per row, scale (and min) per group
    5 nf4    4-bit codes as intB                          w = table[c] * s_g

WORDS > 0 reads the word layout of `edgec.kernels.triton.word_layout` (P = 32 / BITS values a word):
column c·PW + j·W + i of a row is value j of its word c·W + i, the row's value P(c·W + i) + j.

2:4 weights (SPARSE) hold a values matrix (N, K/2) in one of these kinds and a nibble per group
of four inputs naming the two kept positions (low two bits first, ascending): dense column k is
value 2(k//4) + [k%4 is the second kept position] if k%4 is kept, else 0. Only 2:4 weights as
stored come here: those in the 2:4 word layout (`word_layout.sparse_interleave`) have kernels of
their own (gemv_sparse.py, gemm_sparse.py).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def word_position(cols, BITS: tl.constexpr, WORDS: tl.constexpr):
    """Where the code of values-matrix column `cols` is stored, in values along the row: the column itself, or in
    the word layout (WORDS > 0) value j of word c·W + i for column c·PW + j·W + i."""
    if WORDS > 0:
        chunk = (32 // BITS) * WORDS
        return (cols // chunk) * chunk + (cols % WORDS) * (32 // BITS) + (cols % chunk) // WORDS
    return cols


@triton.jit
def decode_values(q_ptr, scale_ptr, min_ptr, lut_ptr, rows, cols, at, mask, q_stride, ng, group,
                  KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr):
    """Values matrix entries (rows, cols) as float32, 0 where not `mask` (rows (BN, 1), cols (1, BK) or (BN, BK)),
    their codes stored at value `at` of the row."""
    row_q = q_ptr + rows.to(tl.int64) * q_stride
    if KIND == 0 or KIND == 1:
        lo = tl.load(row_q + 2 * at, mask=mask, other=0).to(tl.uint32)
        hi = tl.load(row_q + 2 * at + 1, mask=mask, other=0).to(tl.uint32)
        bits = lo | (hi << 8)
        if KIND == 0:
            w = bits.to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
        else:
            w = (bits << 16).to(tl.float32, bitcast=True)
    elif KIND == 2 or KIND == 3:
        code = tl.load(row_q + at, mask=mask, other=0)
        s = tl.load(scale_ptr + rows.to(tl.int64) + cols * 0, mask=mask, other=0.0)  # one scale per row
        if KIND == 2:
            w = tl.load(lut_ptr + code.to(tl.int32), mask=mask, other=0.0) * s
        else:
            w = code.to(tl.int8, bitcast=True).to(tl.float32) * s
    else:
        pos = at * BITS
        byte = pos >> 3
        b0 = tl.load(row_q + byte, mask=mask, other=0).to(tl.uint32)
        if BITS == 3:  # a 3-bit code may cross into the next byte; 2- and 4-bit codes never do
            b0 = b0 | (tl.load(row_q + byte + 1, mask=mask & (byte + 1 < q_stride), other=0).to(tl.uint32) << 8)
        code = (b0 >> (pos & 7).to(tl.uint32)) & ((1 << BITS) - 1)
        g = rows.to(tl.int64) * ng + cols // group
        s = tl.load(scale_ptr + g, mask=mask, other=0.0)
        if KIND == 5:
            w = tl.load(lut_ptr + code.to(tl.int32), mask=mask, other=0.0) * s
        elif ASYM:
            w = code.to(tl.float32) * s + tl.load(min_ptr + g, mask=mask, other=0.0)
        else:
            w = (code.to(tl.int32) - (1 << (BITS - 1))).to(tl.float32) * s
    return tl.where(mask, w, 0.0)


@triton.jit
def decode_tile(q_ptr, scale_ptr, min_ptr, lut_ptr, meta_ptr, rows, cols, mask, q_stride, ng, group, meta_stride,
                KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr, SPARSE: tl.constexpr, WORDS: tl.constexpr):
    """Dense weight entries W[rows, cols] as float32 (0 outside `mask`), 2:4 expanded."""
    if SPARSE:  # codes as stored (the 2:4 word layout has kernels of its own, gemv_sparse.py and gemm_sparse.py)
        quad = cols // 4
        at = cols % 4
        nib = (tl.load(meta_ptr + rows.to(tl.int64) * meta_stride + quad // 2, mask=mask, other=0).to(tl.int32)
               >> ((quad % 2) * 4)) & 15
        first = at == (nib & 3)
        second = (at == (nib >> 2)).to(tl.int32)
        stored = 2 * quad + second
        return decode_values(q_ptr, scale_ptr, min_ptr, lut_ptr, rows, stored, stored,
                             mask & (first | (second == 1)), q_stride, ng, group, KIND, BITS, ASYM)
    return decode_values(q_ptr, scale_ptr, min_ptr, lut_ptr, rows, cols, word_position(cols, BITS, WORDS), mask,
                         q_stride, ng, group, KIND, BITS, ASYM)
