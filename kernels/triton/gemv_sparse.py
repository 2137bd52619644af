"""The decode GEMVs for 2:4 weights: `gemv_sparse` (symmetric int4 codes, in integers) and `gemv_sparse_floats`
(fp16 and bf16 values, in float32).

A 2:4 weight keeps two of each four inputs' weights, so each kept code meets the input at its
kept position: the gather the byte layout pays a byte load and column arithmetic per code for
(210 lane-instructions per stored byte). Here the codes and position nibbles come in the 2:4
word layout (`word_layout.sparse_interleave`) and x in `gemv_ints`' three byte planes, in
natural order (plane word g holds the four inputs of group g). A byte vector of a code word,
`(word >> 4v) & 0x0F0F0F0F`, holds the kept codes of two groups, whose plane words are two
registers; one PRMT (byte permute, selector nibbles = the four kept positions, the second
group's plus 4) picks the four inputs they meet from those eight bytes, and one DP4A per plane
multiplies them. The selectors of a word's four groups come from its 16-bit meta in seven
instructions (`selectors`: each 2-bit position spread to a nibble, then the 4s). Codes are made signed bytes
c − 8 first ((c + 0x78) ^ 0x80 per byte), since the inputs a row's codes meet depend on the
row and no per-chunk sum could take the offset off. Per word of 8 codes: 2 LOP3, 2 shifts,
4 for the sign, 7 for the selectors, 6 PRMT and 6 DP4A.

In Triton's interpreter, which runs no inline assembly, `permute_bytes` and `dot4` compute the same
bytes themselves (DP4A False).

16-bit values need no repacking: as stored, group g's two kept values are one 32-bit word, its
positions a nibble, and its four inputs four contiguous floats. `_gemv_sparse_floats` loads a
chunk of W words of a row (128 bits at a time) with their meta bytes, and each group's inputs
(L1 hits shared by the rows of a thread), picks each kept value's input by its position (two
selects each) and multiplies in float32.
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.gemv_ints import PLANES, dot4, split_chunks
from edgec.kernels.triton.gemv_words import decode_configs, k_split, store_rows
from edgec.kernels.triton.matmul import _interpreted, decode_grid
from edgec.kernels.triton.word_values import half_value

GEMV_SPARSE_BLOCKS = ((256, 4), (512, 8), (128, 4))  # BLOCK_N, warps, as `gemv_ints`
GEMV_SPARSE_FLOAT_BLOCKS = ((128, 4), (128, 8), (64, 4))  # as `gemv_words`
SPARSE_FLOAT_WORDS = (16, 8, 4)
"""Groups (32-bit words of two kept 16-bit values) per chunk of `_gemv_sparse_floats`: the widest dividing K / 4."""


def gemv_sparse_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 int4 decode."""
    return decode_configs(GEMV_SPARSE_BLOCKS)


def gemv_sparse_float_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 fp16 and bf16 decode."""
    return decode_configs(GEMV_SPARSE_FLOAT_BLOCKS)


def sparse_float_words(k: int) -> int | None:
    """Groups per chunk for a 2:4 fp16 or bf16 weight with K inputs, or None when K is not a multiple of 16 (the
    byte-layout GEMV then runs)."""
    return next((words for words in SPARSE_FLOAT_WORDS if k % (4 * words) == 0), None)


@triton.jit
def permute_bytes(low, high, selector, DP4A: tl.constexpr):
    """Byte b of the result is byte (selector >> 4b) & 7 of the eight bytes of `low` and `high` (PRMT)."""
    if DP4A:
        return tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, $3;", "=r,r,r,r", [low, high, selector],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        out = tl.zeros(selector.shape, tl.int32)
        for b in tl.static_range(4):
            at = (selector >> (4 * b)) & 7
            source = tl.where(at < 4, low, high)
            out |= ((source >> (8 * (at & 3))) & 255) << (8 * b)
        return out


@triton.jit
def selectors(meta):
    """A code word's four position nibbles (16 bits: i0 | i1 << 2 per group, group slot s at nibble s) as the PRMT
    selectors of its two byte vectors: low half for vector 0 (slots 0, 1), high half for vector 1 (slots 2, 3); each
    2-bit position spread to a nibble, the second group's plus 4 (its inputs are the permute's high word)."""
    spread = (meta | (meta << 8)) & 0x00FF00FF
    spread = (spread | (spread << 4)) & 0x0F0F0F0F
    spread = (spread | (spread << 2)) & 0x33333333
    return spread | 0x44004400


@triton.jit
def _gemv_sparse_kernel(planes_ptr, factors_ptr, y_ptr, q_ptr, meta_ptr, scale_ptr, N, K, stride_ym, q_stride, ng,
                        WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr, DP4A: tl.constexpr, BLOCK_N: tl.constexpr,
                        SPLIT_K: tl.constexpr):
    pid_n, m = tl.program_id(0), tl.program_id(1)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)
    words = tl.arange(0, WORDS)
    steps = K // (16 * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows start 16-byte aligned (q_stride = K/16 words, K a multiple of 64), and so do the meta half-words' rows
    q_rows = q_ptr + tl.multiple_of(rows[:, None] * q_stride, [4, 1])
    meta_rows = meta_ptr + tl.multiple_of(rows[:, None] * q_stride, [8, 1])
    acc = tl.zeros((BLOCK_N,), tl.float32)
    for step in range(first, last):
        code_words = tl.load(q_rows + step * WORDS + words[None, :]).to(tl.uint32, bitcast=True)
        halves = tl.load(meta_rows + step * WORDS + words[None, :]).to(tl.uint16, bitcast=True)
        chosen = selectors(halves.to(tl.int32))
        chunk = m * steps + step
        planes = planes_ptr + tl.multiple_of(chunk.to(tl.int64) * (PLANES * 4 * WORDS) + words, 4)
        a0 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        a1 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        a2 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        for vector in tl.static_range(2):
            codes = (((code_words >> (4 * vector)) & 0x0F0F0F0F) + 0x78787878) ^ 0x80808080  # c − 8, signed bytes
            selector = chosen >> (16 * vector)
            first_group = planes + 2 * vector * WORDS
            a0 = dot4(codes, permute_bytes(tl.load(first_group)[None, :], tl.load(first_group + WORDS)[None, :],
                                           selector, DP4A), a0, True, True, DP4A)
            a1 = dot4(codes, permute_bytes(tl.load(first_group + 4 * WORDS)[None, :],
                                           tl.load(first_group + 5 * WORDS)[None, :], selector, DP4A),
                      a1, True, False, DP4A)
            a2 = dot4(codes, permute_bytes(tl.load(first_group + 8 * WORDS)[None, :],
                                           tl.load(first_group + 9 * WORDS)[None, :], selector, DP4A),
                      a2, True, False, DP4A)
        total = a0 * 65536 + a1 * 256 + a2
        scale = tl.load(scale_ptr + rows * ng + step // GROUP_STEPS) * tl.load(factors_ptr + chunk)
        acc = tl.fma(tl.sum(total.to(tl.float32), axis=1), scale, acc)
    store_rows(y_ptr, stride_ym, acc, N, BLOCK_N, SPLIT_K)


_gemv_sparse = triton.autotune(configs=gemv_sparse_configs(), key=["N", "K", "WORDS", "GROUP_STEPS"],
                               reset_to_zero=["y_ptr"])(_gemv_sparse_kernel)


@triton.jit
def _gemv_sparse_floats_kernel(x_ptr, y_ptr, q_ptr, meta_ptr, N, K, stride_xm, stride_ym, q_stride, meta_stride,
                               KIND: tl.constexpr, WORDS: tl.constexpr, BLOCK_N: tl.constexpr,
                               SPLIT_K: tl.constexpr):
    pid_n, m = tl.program_id(0), tl.program_id(1)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)[:, None]
    words = tl.arange(0, WORDS)
    steps = K // (4 * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows of values (K/4 words) and x start aligned to a chunk's 128-bit loads (K a multiple of 4W)
    q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
    meta_rows = meta_ptr + rows * meta_stride
    x_row = x_ptr + m * stride_xm
    acc = tl.zeros((BLOCK_N, WORDS), tl.float32)
    for step in range(first, last):
        group = step * WORDS + words[None, :]
        pairs = tl.load(q_rows + group).to(tl.uint32, bitcast=True)
        nibbles = (tl.load(meta_rows + group // 2).to(tl.int32) >> (4 * (group % 2))) & 15  # low nibble first
        kept_first = nibbles & 3  # 0, 1 or 2
        kept_second = nibbles >> 2  # 1, 2 or 3
        inputs = x_row + 4 * group
        x1 = tl.load(inputs + 1)
        x2 = tl.load(inputs + 2)
        first_input = tl.where(kept_first == 0, tl.load(inputs), tl.where(kept_first == 1, x1, x2))
        second_input = tl.where(kept_second == 3, tl.load(inputs + 3), tl.where(kept_second == 2, x2, x1))
        acc = tl.fma(half_value(pairs, 0, KIND), first_input, acc)
        acc = tl.fma(half_value(pairs, 1, KIND), second_input, acc)
    out = tl.sum(acc, axis=1)
    store_rows(y_ptr, stride_ym, out, N, BLOCK_N, SPLIT_K)


_gemv_sparse_floats = triton.autotune(configs=gemv_sparse_float_configs(), key=["N", "K", "KIND", "WORDS"],
                                      reset_to_zero=["y_ptr"])(_gemv_sparse_floats_kernel)


def gemv_sparse_floats(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a 2:4 weight of fp16 or bf16 values
    as stored, K a multiple of 16, autotuned."""
    import torch

    n, k = weight.shape
    grid = decode_grid(n, x.shape[0])
    _gemv_sparse_floats[grid](x, out, weight.q.view(torch.int32), weight.meta, n, k, x.stride(0), out.stride(0),
                              k // 4, weight.meta.shape[1], KIND=weight.kind, WORDS=sparse_float_words(k))


def gemv_sparse(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a 2:4 weight of symmetric int4 codes
    in the 2:4 word layout, autotuned."""
    import torch

    planes, _, factors, _ = split_chunks(weight, x)
    n, k = weight.shape
    grid = decode_grid(n, x.shape[0])
    _gemv_sparse[grid](planes, factors, out, weight.q_words, weight.meta.view(torch.int16),
                       weight.scale, n, k, out.stride(0), weight.q_words.shape[1], weight.ng, WORDS=weight.words,
                       GROUP_STEPS=weight.group_steps, DP4A=not _interpreted())
