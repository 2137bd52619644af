"""`_gemm_words`: the prefill GEMM for codes in the word layout (`edgec.kernels.triton.word_layout`).

Each program takes a BLOCK_M x BLOCK_N output tile and walks K a chunk at a time: one
(BLOCK_N, WORDS) tile of 32-bit code words (128-bit loads), decoded in registers by
`edgec.kernels.triton.word_values`. Value j of the chunk's words are the chunk's columns
j·WORDS .. j·WORDS + WORDS − 1, in order: with 16-word chunks each is a (BLOCK_N, 16) weight
tile that meets the x tile of the same 16 columns in one `tl.dot` (K = 16, its least); with 8
or 4 words, 2 or 4 consecutive values are joined side by side into such a tile. Where a chunk
holds several scale groups (runs of GROUP_WORDS words, `word_layout.group_words`), a tile's
columns come in runs of GROUP_WORDS, and x is loaded at those columns. No code is
loaded twice or gathered, and the decode of a weight is shared by the BLOCK_M rows of x. Group
scales (and minima) are applied to the decoded tile; int8 and fp8 stay integers or exact e4m3
values in the product and take their row scale at the end. Operands meet as float16 (bf16
weights as float32: tf32 on a GPU), with float32 accumulation. Rows past M or N read row M − 1
or N − 1 and are not stored. A chunk must hold 16 columns (`matmul.gemm_words_fits`).
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.matmul import _interpreted
from edgec.kernels.triton.word_values import chunk_column, chunk_value, code_rows, load_chunk

GEMM_WORD_BLOCKS = ((128, 128, 8, 1), (128, 64, 8, 2), (64, 64, 4, 3), (32, 64, 8, 2))  # BLOCK_M, _N, warps, stages


def gemm_word_configs() -> list[triton.Config]:
    """Block sizes tried for prefill on the word layout; the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in GEMM_WORD_BLOCKS]
    return configs[:1] if _interpreted() else configs


@triton.jit
def _scaled_value(chunk, exponent, lut_ptr, scale, minimum, j: tl.constexpr, KIND: tl.constexpr, BITS: tl.constexpr,
                  ASYM: tl.constexpr, NATIVE_FP8: tl.constexpr):
    """Value j of each word of `chunk` (`load_chunk`'s four), times its group scale plus its minimum for the grouped
    kinds."""
    low, high, even, odd = chunk
    value = chunk_value(low, high, even, odd, exponent, lut_ptr, j, KIND, BITS, ASYM, NATIVE_FP8)
    if KIND == 4 or KIND == 5:
        value = tl.fma(value, scale, minimum)
    return value


@triton.jit
def _tile16(chunk, exponent, lut_ptr, scale, minimum, j: tl.constexpr, KIND: tl.constexpr, BITS: tl.constexpr,
            ASYM: tl.constexpr, NATIVE_FP8: tl.constexpr, WORDS: tl.constexpr, BLOCK_N: tl.constexpr):
    """The 16 consecutive columns j·WORDS .. j·WORDS + 15 of the chunk as a (BLOCK_N, 16) tile: value j alone with
    16-word chunks, values j and j + 1 side by side with 8, j .. j + 3 with 4."""
    if WORDS == 16:
        return _scaled_value(chunk, exponent, lut_ptr, scale, minimum, j, KIND, BITS, ASYM, NATIVE_FP8)
    elif WORDS == 8:
        pair = tl.join(_scaled_value(chunk, exponent, lut_ptr, scale, minimum, j, KIND, BITS, ASYM, NATIVE_FP8),
                       _scaled_value(chunk, exponent, lut_ptr, scale, minimum, j + 1, KIND, BITS, ASYM, NATIVE_FP8))
        return tl.reshape(tl.permute(pair, (0, 2, 1)), (BLOCK_N, 16))  # [row, s, word] = value j + s of the word
    else:
        first = tl.join(_scaled_value(chunk, exponent, lut_ptr, scale, minimum, j, KIND, BITS, ASYM, NATIVE_FP8),
                        _scaled_value(chunk, exponent, lut_ptr, scale, minimum, j + 1, KIND, BITS, ASYM, NATIVE_FP8))
        second = tl.join(_scaled_value(chunk, exponent, lut_ptr, scale, minimum, j + 2, KIND, BITS, ASYM, NATIVE_FP8),
                         _scaled_value(chunk, exponent, lut_ptr, scale, minimum, j + 3, KIND, BITS, ASYM, NATIVE_FP8))
        four = tl.join(first, second)  # [row, word, s, t] = value j + 2t + s of the word
        return tl.reshape(tl.permute(four, (0, 3, 2, 1)), (BLOCK_N, 16))


@triton.autotune(configs=gemm_word_configs(), key=["N", "K", "KIND", "BITS", "ASYM", "WORDS", "GROUP_WORDS",
                                                    "GROUP_STEPS", "NATIVE_FP8"])
@triton.jit
def _gemm_words(x_ptr, y_ptr, q_ptr, scale_ptr, min_ptr, exponent_ptr, lut_ptr, M, N, K, stride_xm, stride_ym,
                q_stride, ng, KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr, WORDS: tl.constexpr,
                GROUP_WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr, NATIVE_FP8: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr):
    PER_WORD: tl.constexpr = 16 if BITS == 3 else 32 // BITS  # word_layout.codes_per_word
    JOINED: tl.constexpr = 16 // WORDS  # values per 16-column tile
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(rn, N - 1).to(tl.int64)[:, None]
    q_rows = code_rows(q_ptr, rows, q_stride, BITS, WORDS)
    tile_column = tl.arange(0, 16)  # value j + c // W of word c % W, `_tile16`
    columns = chunk_column(tile_column % WORDS, tile_column // WORDS, WORDS, GROUP_WORDS, PER_WORD)
    x_rows = x_ptr + tl.minimum(rm, M - 1).to(tl.int64)[:, None] * stride_xm + columns[None, :]
    exponent = tl.load(exponent_ptr).to(tl.uint32, bitcast=True)
    dot_type = tl.float32 if KIND == 1 else tl.float16  # bf16 weights may exceed float16's range
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for step in range(0, K // (PER_WORD * WORDS)):
        chunk = load_chunk(q_rows, step, KIND, BITS, WORDS)
        x_chunk = x_rows + step * PER_WORD * WORDS
        scale = 1.0  # per row (int8, fp8: after the loop) or none (f16, bf16)
        minimum = 0.0
        if KIND == 4 or KIND == 5:  # each word's group: the chunk's, or its run's of GROUP_WORDS words
            group = rows * ng + (step // GROUP_STEPS) * (WORDS // GROUP_WORDS)
            if GROUP_WORDS != WORDS:
                group += tl.arange(0, WORDS)[None, :] // GROUP_WORDS
            scale = tl.load(scale_ptr + group)
            if ASYM:
                minimum = tl.load(min_ptr + group)
        for j in tl.static_range(0, PER_WORD, JOINED):
            tile = _tile16(chunk, exponent, lut_ptr, scale, minimum, j, KIND, BITS, ASYM, NATIVE_FP8, WORDS, BLOCK_N)
            acc = tl.dot(tl.load(x_chunk + j * GROUP_WORDS).to(dot_type), tl.trans(tile.to(dot_type)), acc)
    if KIND == 2 or KIND == 3:  # one scale per row, applied once
        row_scale = tl.load(scale_ptr + tl.minimum(rn, N - 1).to(tl.int64) * ng)
        acc *= row_scale[None, :] * (1.0 if KIND == 3 or NATIVE_FP8 else 256.0)
    tl.store(y_ptr + rm[:, None].to(tl.int64) * stride_ym + rn[None, :], acc, mask=(rm < M)[:, None] & (rn < N)[None, :])
