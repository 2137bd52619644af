"""The decode GEMV for 2:4 weights of symmetric int4 codes in the 2:4 word layout, in integer arithmetic.

A 2:4 weight keeps two of each four inputs' weights, so each kept code meets the input at its
kept position: the gather the byte layout pays a byte load and column arithmetic per code for
(210 lane-instructions per stored byte). Here the codes and position nibbles come in the 2:4
word layout (`word_layout.sparse_interleave`) and x in `gemv_ints`' three byte planes, in
natural order (plane word g holds the four inputs of group g). A byte vector of a code word,
`(word >> 4v) & 0x0F0F0F0F`, holds the kept codes of two groups, whose plane words are two
registers; one PRMT (byte permute, selector nibbles = the four kept positions, the second
group's plus 4) picks the four inputs they meet from those eight bytes, and one DP4A per plane
multiplies them. The selectors of a word's four groups come from its 16-bit meta in six
instructions (`selectors`: each 2-bit position spread to a nibble). Codes are made signed bytes
c − 8 first ((c + 0x78) ^ 0x80 per byte), since the inputs a row's codes meet depend on the
row and no per-chunk sum could take the offset off. Per word of 8 codes: 2 LOP3, 2 shifts,
4 for the sign, 6 for the selectors, 6 PRMT and 6 DP4A.

In Triton's interpreter, which runs no inline assembly, `permute_bytes` and `dot4` compute the same
bytes themselves (DP4A False).
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.gemv_ints import PLANES, dot4, split_chunks
from edgec.kernels.triton.gemv_words import decode_configs
from edgec.kernels.triton.matmul import _interpreted

GEMV_SPARSE_BLOCKS = ((256, 4), (512, 8), (128, 4))  # BLOCK_N, warps, as `gemv_ints`


def gemv_sparse_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 decode."""
    return decode_configs(GEMV_SPARSE_BLOCKS)


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
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)
    words = tl.arange(0, WORDS)
    steps = K // (16 * WORDS)
    per_split = tl.cdiv(steps, SPLIT_K)
    first = pid_k * per_split
    last = tl.minimum(first + per_split, steps)
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
    out_rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if SPLIT_K == 1:
        tl.store(y_ptr + m * stride_ym + out_rows, acc, mask=out_rows < N)
    else:
        tl.atomic_add(y_ptr + m * stride_ym + out_rows, acc, mask=out_rows < N)


_gemv_sparse = triton.autotune(configs=gemv_sparse_configs(), key=["N", "K", "WORDS", "GROUP_STEPS"],
                               reset_to_zero=["y_ptr"])(_gemv_sparse_kernel)


def gemv_sparse(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a 2:4 weight of symmetric int4 codes
    in the 2:4 word layout, autotuned."""
    import torch

    planes, _, factors, _ = split_chunks(weight, x)
    n, k = weight.shape

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK_N"]), x.shape[0], meta["SPLIT_K"])

    _gemv_sparse[grid](planes, factors, out, weight.q_words, weight.meta.view(torch.int16),
                       weight.scale, n, k, out.stride(0), weight.q_words.shape[1], weight.ng, WORDS=weight.words,
                       GROUP_STEPS=weight.group_steps, DP4A=not _interpreted())
