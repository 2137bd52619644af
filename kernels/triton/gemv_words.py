"""`_gemv_words`: the decode GEMV for codes in the word layout (`edgec.kernels.triton.word_layout`).

Each program takes BLOCK_N output rows of one x row and one K split, and per step one chunk of
P·WORDS columns (P values per word, `word_layout.codes_per_word`): a (BLOCK_N, WORDS) tile of
32-bit code words, which Triton loads 128 bits per thread, and the chunk's inputs, P contiguous
slices of WORDS values. Nothing is masked inside the loop: out-of-range rows read row N − 1 and are not stored.
Per value the main loop issues (docs/triton.md has the SASS counts):

* 4-bit integers (KIND 4): one LOP3, `(word & (15 << sh)) | 0x4B000000`, the float
  2^23 + c·2^sh (exact: c·2^sh < 2^23; the high half-word is shifted down by 12 first, so
  every code sits at bit 0, 4, 8, 12 or 16), one FFMA that makes it c − 8 (ASYM: c), exactly,
  and one FFMA with x. Per chunk each (row, word) sum is scaled by its group scale; ASYM adds
  the group minimum times the chunk's x sum, which `linear` takes once for all rows (`sums_ptr`,
  float32 (M, K / chunk)).
* 2-bit integers: the same from 2-bit slots; 3-bit integers: first moved from their two planes
  into 4-bit slots (`word_values.three_bit_slots`: a few instructions per word of 16 codes).
* nf4 (KIND 5): per code byte one 64-bit load of its two values from a 256-pair table (2 KB,
  cache-resident), then one FFMA each.
* int8 (KIND 3): the same with bytes, whose sign bits are flipped first (c + 128 is the
  unsigned byte), and the row's scale applied once, at the end.
* fp8 (KIND 2): each byte widened by the GPU's own e4m3 conversion (sm_89 and later, NATIVE_FP8),
  else its bits moved into a float16 that holds the value / 256, exactly (subnormals included; a
  NaN code reads as finite, but its row's scale is NaN, `storage_parts`); one FFMA; the row's
  scale at the end.
* float16 (KIND 0): a half-word widened to float32 and one FFMA; bfloat16 (KIND 1): the
  half-word moved to the top of a float32 (one shift or mask) and one FFMA.

The decoders are `edgec.kernels.triton.word_values`'s, shared with the prefill GEMM. Products are
explicit `tl.fma`s, so the count holds whether or not Triton fuses a multiply and an add by
default (Triton 3.10 stops doing so).
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.matmul import _interpreted
from edgec.kernels.triton.word_values import chunk_value, load_chunk

GEMV_WORD_BLOCKS = ((128, 4), (128, 8), (64, 4))  # BLOCK_N, warps; 4 rows a thread first: the leanest loop
GEMV_WORD_SPLITS = (1, 4, 16)  # K splits: a 4096-row output fills 132 SMs only when split


def _zero_output(args: dict) -> None:
    args["y_ptr"].zero_()  # split-K programs add into it


def gemv_word_configs() -> list[triton.Config]:
    """Block sizes tried for decode (split-K zeroes the output first); the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_N": bn, "SPLIT_K": sk}, num_warps=w, pre_hook=_zero_output if sk > 1 else None)
               for bn, w in GEMV_WORD_BLOCKS for sk in GEMV_WORD_SPLITS]
    return configs[:1] if _interpreted() else configs


@triton.autotune(configs=gemv_word_configs(), key=["N", "K", "KIND", "BITS", "ASYM", "WORDS", "GROUP_STEPS", "NATIVE_FP8"],
                 reset_to_zero=["y_ptr"])
@triton.jit
def _gemv_words(x_ptr, y_ptr, q_ptr, scale_ptr, min_ptr, sums_ptr, exponent_ptr, lut_ptr, N, K, stride_xm, stride_ym,
                q_stride, ng, KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr, WORDS: tl.constexpr,
                GROUP_STEPS: tl.constexpr, NATIVE_FP8: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr):
    PER_WORD: tl.constexpr = 16 if BITS == 3 else 32 // BITS  # word_layout.codes_per_word
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)[:, None]
    words = tl.arange(0, WORDS)
    steps = K // (PER_WORD * WORDS)
    per_split = tl.cdiv(steps, SPLIT_K)
    first = pid_k * per_split
    last = tl.minimum(first + per_split, steps)
    # rows start 16-byte aligned (q_stride = K·BITS/32 words, K a multiple of 4P; 3-bit: of 128) and so do x rows
    q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
    x_row = x_ptr + tl.multiple_of(m * stride_xm + words, 4)
    exponent = tl.load(exponent_ptr).to(tl.uint32, bitcast=True)
    pairs = (lut_ptr + 16).to(tl.pointer_type(tl.int64), bitcast=True)  # nf4: (low, high) values per code byte
    acc = tl.zeros((BLOCK_N, WORDS), tl.float32)
    offsets = tl.zeros((BLOCK_N, 1), tl.float32)  # ASYM: the group minima times the chunks' x sums
    for step in range(first, last):
        low, high, even, odd = load_chunk(q_rows, step, KIND, BITS, WORDS)
        x_chunk = x_row + step * PER_WORD * WORDS
        if KIND == 4 or KIND == 5:
            part = tl.zeros((BLOCK_N, WORDS), tl.float32)
            if KIND == 5:  # both values of a code byte in one 64-bit load
                for b in tl.static_range(4):
                    pair = tl.load(pairs + ((low >> (8 * b)) & 255)).to(tl.uint64, bitcast=True)
                    first_value = (pair & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
                    part = tl.fma(first_value, tl.load(x_chunk + 2 * b * WORDS)[None, :], part)
                    second_value = (pair >> 32).to(tl.uint32).to(tl.float32, bitcast=True)
                    part = tl.fma(second_value, tl.load(x_chunk + (2 * b + 1) * WORDS)[None, :], part)
            else:
                for j in tl.static_range(PER_WORD):
                    value = chunk_value(low, high, even, odd, exponent, lut_ptr, j, KIND, BITS, ASYM, NATIVE_FP8)
                    part = tl.fma(value, tl.load(x_chunk + j * WORDS)[None, :], part)
            group = rows * ng + step // GROUP_STEPS
            acc = tl.fma(part, tl.load(scale_ptr + group), acc)
            if ASYM:
                offsets = tl.fma(tl.load(min_ptr + group), tl.load(sums_ptr + m * steps + step), offsets)
        else:
            for j in tl.static_range(PER_WORD):
                value = chunk_value(low, high, even, odd, exponent, lut_ptr, j, KIND, BITS, ASYM, NATIVE_FP8)
                acc = tl.fma(value, tl.load(x_chunk + j * WORDS)[None, :], acc)
    out = tl.sum(acc, axis=1)
    if ASYM:
        out += tl.sum(offsets, axis=1)
    if KIND == 2 and not NATIVE_FP8:
        out *= 256.0
    if KIND == 2 or KIND == 3:
        out *= tl.load(scale_ptr + tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64) * ng)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    if SPLIT_K == 1:
        tl.store(y_ptr + m * stride_ym + rows, out, mask=rows < N)
    else:
        tl.atomic_add(y_ptr + m * stride_ym + rows, out, mask=rows < N)
