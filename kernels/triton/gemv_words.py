"""`_gemv_words`: the decode GEMV for float, int8 and nf4 codes in the word layout (`edgec.kernels.triton.word_layout`).

Each program takes BLOCK_N output rows of one x row and one K split, and per step one chunk of
P·WORDS columns (P values per word, `word_layout.codes_per_word`): a (BLOCK_N, WORDS) tile of
32-bit code words, which Triton loads 128 bits per thread, and the chunk's inputs, P contiguous
slices of WORDS values. Nothing is masked inside the loop: out-of-range rows read row N − 1 and are not stored.
Per value the main loop issues (docs/triton.md has the SASS counts):

* nf4 (KIND 5): per code one 32-bit load from the 16-value table (64 bytes, one cache line for a
  warp's 32 loads), its address the table's with the code's byte offset in the low byte
  (`word_values.table_values`: a PRMT, inline PTX on a GPU), and one FFMA. (A 256-pair table,
  one 64-bit load per code byte, issued fewer instructions, 6.5 a stored byte against 8.4 on
  sm_90, but a warp's loads from its 2 KB fell on about 14 cache lines where these fall on one:
  some 14 bytes of L1 datapath per stored byte for the values, against 8.) Per chunk each
  (row, word) sum is scaled by its group scale, loaded in the tile's layout
  (`word_values.load_in_place`, ASM: inline PTX on a GPU).
* int8 (KIND 3): one LOP3, `(word & (255 << sh)) | 0x4B000000`, the float 2^23 + c·2^sh of the
  byte whose sign bit was flipped first (c + 128 is the unsigned byte), one FFMA that makes it c,
  exactly (`word_values.exact_int`), and one FFMA with x; the row's scale once, at the end.
* fp8 (KIND 2): each byte widened by the GPU's own e4m3 conversion (sm_89 and later, NATIVE_FP8),
  else its bits moved into a float16 that holds the value / 256, exactly (subnormals included; a
  NaN code reads as finite, but its row's scale is NaN, `storage_parts`); one FFMA; the row's
  scale at the end.
* float16 (KIND 0): a half-word widened to float32 and one FFMA; bfloat16 (KIND 1): the
  half-word moved to the top of a float32 (one shift or mask) and one FFMA.

4-, 3- and 2-bit integer codes take `edgec.kernels.triton.gemv_ints` instead, where a float32
FFMA per code would cost more than an H200 can issue per byte. The decoders are
`edgec.kernels.triton.word_values`'s, shared with the prefill GEMM. Products are explicit
`tl.fma`s, so the count holds whether or not Triton fuses a multiply and an add by default
(Triton 3.10 stops doing so).
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.matmul import _interpreted
from edgec.kernels.triton.word_values import chunk_value, code_offsets, load_chunk, load_in_place, table_values

GEMV_WORD_BLOCKS = ((128, 4), (256, 8), (64, 4))
"""BLOCK_N for 16-word chunks, warps: 4 rows of 4 words a thread first, the leanest loop, in blocks of 4 or 8 warps;
then 2 rows, half the registers (nf4: 96 against 161 on sm_90) and twice the input loads per stored byte. Narrower
chunks take proportionally more rows (`rows_for_chunk`), so a thread keeps as many words and loads each input for
as many rows. (With 8 warps and 2 rows a thread, ptxas held nf4's loop to 80 registers and spilled one.)"""
GEMV_WORD_SPLITS = (1, 4, 16)  # K splits: a 4096-row output fills 132 SMs only when split


def _zero_output(args: dict) -> None:
    args["y_ptr"].zero_()  # split-K programs add into it


def decode_configs(blocks: tuple[tuple[int, int], ...]) -> list[triton.Config]:
    """Configurations of a word-layout decode GEMV: each (BLOCK_N, warps) of `blocks` with each K split (split-K
    zeroes the output first); the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_N": bn, "SPLIT_K": sk}, num_warps=w, pre_hook=_zero_output if sk > 1 else None)
               for bn, w in blocks for sk in GEMV_WORD_SPLITS]
    return configs[:1] if _interpreted() else configs


def gemv_word_configs() -> list[triton.Config]:
    """Block sizes tried for decode (for 16-word chunks, `rows_for_chunk`)."""
    return decode_configs(GEMV_WORD_BLOCKS)


def rows_for_chunk(configs: list[triton.Config], WORDS: int, **_) -> list[triton.Config]:
    """`configs` with BLOCK_N scaled to chunks of WORDS words (16 // WORDS times the rows): the autotuner's
    configuration hook, which sees the launch's constexprs (the interpreter's single configuration skips it)."""
    return [triton.Config({**config.kwargs, "BLOCK_N": config.kwargs["BLOCK_N"] * 16 // WORDS},
                          num_warps=config.num_warps, pre_hook=config.pre_hook) for config in configs]


@triton.jit
def k_split(steps, SPLIT_K: tl.constexpr):
    """The chunks [first, last) of `steps` that K split program_id(2) of SPLIT_K takes (possibly none)."""
    per_split = tl.cdiv(steps, SPLIT_K)
    first = tl.program_id(2) * per_split
    return first, tl.minimum(first + per_split, steps)


@triton.jit
def store_rows(y_ptr, stride_ym, out, N, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr):
    """Write a decode program's BLOCK_N sums into y's row program_id(1), or add them in when K is split."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    if SPLIT_K == 1:
        tl.store(y_ptr + tl.program_id(1) * stride_ym + rows, out, mask=rows < N)
    else:
        tl.atomic_add(y_ptr + tl.program_id(1) * stride_ym + rows, out, mask=rows < N)


@triton.jit
def _gemv_words_kernel(x_ptr, y_ptr, q_ptr, scale_ptr, exponent_ptr, lut_ptr, N, K, stride_xm, stride_ym, q_stride,
                       ng, KIND: tl.constexpr, BITS: tl.constexpr, WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr,
                       NATIVE_FP8: tl.constexpr, ASM: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr):
    PER_WORD: tl.constexpr = 32 // BITS  # word_layout.codes_per_word
    pid_n, m = tl.program_id(0), tl.program_id(1)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)[:, None]
    words = tl.arange(0, WORDS)
    steps = K // (PER_WORD * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows start 16-byte aligned (q_stride = K·BITS/32 words, K a multiple of 4P) and so do x rows
    q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
    x_row = x_ptr + tl.multiple_of(m * stride_xm + words, 4)
    exponent = tl.load(exponent_ptr).to(tl.uint32, bitcast=True)
    acc = tl.zeros((BLOCK_N, WORDS), tl.float32)
    for step in range(first, last):
        low, high, even, odd = load_chunk(q_rows, step, KIND, BITS, WORDS)
        x_chunk = x_row + step * PER_WORD * WORDS
        if KIND == 5:  # each code's value from the 16-value table; a chunk's sums, then its group scale
            even_codes, odd_codes = code_offsets(low)
            values = table_values(even_codes, lut_ptr, ASM) + table_values(odd_codes, lut_ptr, ASM)  # 0, 2, 4, 6, 1, 3, 5, 7
            part = tl.zeros((BLOCK_N, WORDS), tl.float32)
            for i in tl.static_range(8):
                part = tl.fma(values[i], tl.load(x_chunk + (2 * (i % 4) + i // 4) * WORDS)[None, :], part)
            acc = tl.fma(part, load_in_place(scale_ptr + rows * ng + step // GROUP_STEPS, ASM), acc)
        else:
            for j in tl.static_range(PER_WORD):
                value = chunk_value(low, high, even, odd, exponent, lut_ptr, j, KIND, BITS, False, NATIVE_FP8)
                acc = tl.fma(value, tl.load(x_chunk + j * WORDS)[None, :], acc)
    out = tl.sum(acc, axis=1)
    if KIND == 2 and not NATIVE_FP8:
        out *= 256.0
    if KIND == 2 or KIND == 3:
        out *= tl.load(scale_ptr + tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64) * ng)
    store_rows(y_ptr, stride_ym, out, N, BLOCK_N, SPLIT_K)


_WORD_KEY = ["N", "K", "KIND", "BITS", "WORDS", "GROUP_STEPS", "NATIVE_FP8"]
_gemv_words = triton.autotune(configs=gemv_word_configs(), key=_WORD_KEY,
                              prune_configs_by={"early_config_prune": rows_for_chunk},
                              reset_to_zero=["y_ptr"])(_gemv_words_kernel)
