"""The decode GEMV for 4-, 3- and 2-bit integer codes in the word layout, in integer arithmetic: `_gemv_ints`.

A float32 FFMA per code costs three instructions per code (one LOP3 and one FFMA make the code
a float, `word_values.exact_int`, one FFMA multiplies it), 6.8 lane-instructions per stored byte
at 4 bits, 10 at 3 and 12 at 2, over the 7 an H200 can issue per byte its memory delivers. A
tensor-core tile would issue less but passes every decoded value through shared memory (8 bytes
of traffic per stored int4 byte, 16 per int2 byte; shared memory also moves 128 bytes per clock
and SM). So the codes meet x in integer dot products on the CUDA cores instead, in registers:

* `_split_chunks` (one program per x row and chunk of the word layout) writes x as three byte
  planes of one block-floating-point number per chunk: x·2^s rounded to the nearest 2^-16, an
  integer q = X0·65536 + X1·256 + X2 below 2^23 in magnitude (X0 a signed byte, X1 and X2
  unsigned ones), s chosen so that |x·2^s| < 128 for
  the chunk's largest |x|: every x of the chunk to 23 bits of the largest, which bounds the
  error as a float32 dot product's bound does. Each byte sits in its plane word where the code it
  meets sits among the code bytes below. Per chunk it also writes 2^-16-s, each word position's
  plane sum X0·65536 + X1·256 + X2 over the chunk columns that position's codes cover, and (for
  asymmetric codes) the chunk's float32 sum of x, or each word's where a chunk holds several
  scale groups (`word_layout.group_words`).
* `_gemv_ints` takes the codes of each 32-bit word four at a time in bytes ((word >> sh) &
  0x0F0F0F0F for int4, 0x03030303 for int2; 3-bit codes from their two planes into 4-bit slots,
  `word_values.three_bit_slots`, then 0x07070707) and meets each byte vector with the matching
  word of each plane in one DP4A (a four-byte integer dot product accumulated in int32). Per
  chunk each (row, word) combines its planes exactly in int32 (a0·65536 + a1·256 + a2, minus
  2^(B−1) times the position's plane sum for symmetric codes), converts once to float32 and
  takes its group scale (the scale of its word's group where a chunk holds several) times the
  chunk's 2^-16-s; asymmetric codes add the group minimum times the chunk's (or the word's) x
  sum. Per int4 word that is 1 SHF, 2 LOP3 and 6 DP4A for 8 codes.

In Triton's interpreter, which runs no inline assembly, `dot4` adds the four byte products itself
(DP4A False); compiled for a GPU it is the DP4A. x must be finite for finite results (a NaN or
infinity in a chunk makes its rows' sums NaN).
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.gemv_words import decode_configs, k_split, store_rows
from edgec.kernels.triton.matmul import _interpreted, decode_grid
from edgec.kernels.triton.word_values import chunk_column, code_rows, load_chunk

GEMV_INT_BLOCKS = ((256, 4), (512, 8), (128, 4))  # BLOCK_N, warps; many rows a thread first: x's planes serve them all
PLANES = tl.constexpr(3)
"""Byte planes x is split into: 7 + 8 + 8 bits below the sign."""


def gemv_int_configs() -> list[triton.Config]:
    """Block sizes tried for decode."""
    return decode_configs(GEMV_INT_BLOCKS)


@triton.jit
def value_index(vector, byte, BITS: tl.constexpr):
    """Which value of its word (`word_layout`: value j of word i is chunk column j·W + i) byte `byte` of byte
    vector `vector` (`code_bytes`) holds."""
    if BITS == 4:
        return 2 * byte + vector
    elif BITS == 2:
        return 4 * byte + vector
    else:  # vector 2·parity + u: slot 2·byte + u of the even (parity 0) or odd values
        return 4 * byte + 2 * (vector % 2) + vector // 2


@triton.jit
def code_bytes(low, even, odd, vector: tl.constexpr, BITS: tl.constexpr):
    """Byte vector `vector` of each word of a chunk (`load_chunk`'s low, even, odd): four codes, one per byte."""
    if BITS == 4:
        return (low >> (4 * vector)) & 0x0F0F0F0F
    elif BITS == 2:
        return (low >> (2 * vector)) & 0x03030303
    else:
        return ((even if vector < 2 else odd) >> (4 * (vector % 2))) & 0x07070707


@triton.jit
def dot4(codes, x, acc, SIGNED_CODES: tl.constexpr, SIGNED_X: tl.constexpr, DP4A: tl.constexpr):
    """acc + the dot product of the four bytes of `codes` with those of `x` (each signed or unsigned bytes), in
    int32: one DP4A on a GPU, four products in the interpreter."""
    codes = codes.to(tl.int32, bitcast=True)
    if DP4A:
        types: tl.constexpr = (".s32" if SIGNED_CODES else ".u32") + (".s32" if SIGNED_X else ".u32")
        return tl.inline_asm_elementwise("dp4a" + types + " $0, $1, $2, $3;", "=r,r,r,r", [codes, x, acc],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        for b in tl.static_range(4):
            code = (codes >> (8 * b)) & 255
            if SIGNED_CODES:
                code = (code ^ 128) - 128
            x_byte = (x >> (8 * b)) & 255
            if SIGNED_X:
                x_byte = (x_byte ^ 128) - 128
            acc += code * x_byte
        return acc


@triton.jit
def _packed(value, byte):
    """The low bytes of int32 values (..., 4) as the words holding them in bytes 0..3."""
    return tl.sum((value & 255) << (8 * byte), axis=2)  # disjoint bytes: the sum is the OR


@triton.jit
def _split_chunks(x_ptr, planes_ptr, positions_ptr, factors_ptr, sums_ptr, K, stride_xm, BITS: tl.constexpr,
                  ASYM: tl.constexpr, WORDS: tl.constexpr, GROUP_WORDS: tl.constexpr, SPARSE: tl.constexpr):
    PER_WORD: tl.constexpr = 16 if BITS == 3 else 32 // BITS  # word_layout.codes_per_word
    VECTORS: tl.constexpr = 16 // BITS if SPARSE else PER_WORD // 4  # 2:4: plane word s·W + i holds group s·W + i
    COLUMNS: tl.constexpr = 4 * VECTORS * WORDS  # x columns a chunk covers
    m, step = tl.program_id(0), tl.program_id(1)
    steps = K // COLUMNS
    vector = tl.arange(0, VECTORS)[:, None, None]
    word = tl.arange(0, WORDS)[None, :, None]
    byte = tl.arange(0, 4)[None, None, :]
    if SPARSE:
        columns = 4 * (vector * WORDS + word) + byte
    else:
        columns = chunk_column(word, value_index(vector, byte, BITS), WORDS, GROUP_WORDS, PER_WORD)
    x = tl.load(x_ptr + m.to(tl.int64) * stride_xm + step * COLUMNS + columns)  # (VECTORS, WORDS, 4)
    finite = tl.abs(x) < float("inf")  # False for NaN too
    x = tl.where(finite, x, 0.0)
    largest = tl.max(tl.max(tl.max(tl.abs(x), axis=2), axis=1), axis=0)
    exponent = tl.minimum(tl.maximum((largest.to(tl.int32, bitcast=True) >> 23) & 255, 23), 254)
    scaled = x * ((260 - exponent) << 23).to(tl.float32, bitcast=True)  # |x·2^(133 − e)| < 128, exactly
    whole = tl.minimum(tl.floor(scaled * 65536.0 + 0.5), 8388607.0).to(tl.int32)  # |whole| < 2^23: X0 is a byte
    chunk = m * steps + step
    plane_words = planes_ptr + chunk.to(tl.int64) * (PLANES * VECTORS * WORDS) + (
        tl.arange(0, VECTORS)[:, None] * WORDS + tl.arange(0, WORDS)[None, :])
    tl.store(plane_words, _packed(whole >> 16, byte))  # X0: the arithmetic shift keeps the sign
    tl.store(plane_words + VECTORS * WORDS, _packed(whole >> 8, byte))
    tl.store(plane_words + 2 * VECTORS * WORDS, _packed(whole, byte))
    if not SPARSE:  # 2:4 codes come signed (`gemv_sparse`), with no offset to take off
        tl.store(positions_ptr + chunk.to(tl.int64) * WORDS + tl.arange(0, WORDS),
                 tl.sum(tl.sum(whole, axis=2), axis=0))
    all_finite = tl.min(tl.min(tl.min(finite.to(tl.int32), axis=2), axis=1), axis=0) == 1
    factor = ((exponent - 22) << 23).to(tl.float32, bitcast=True)  # 2^-16 / 2^(133 − e)
    tl.store(factors_ptr + chunk, tl.where(all_finite, factor, float("nan")))  # a NaN or infinity: NaN sums
    if ASYM and GROUP_WORDS == WORDS:
        tl.store(sums_ptr + chunk, tl.sum(tl.sum(tl.sum(x, axis=2), axis=1), axis=0))
    elif ASYM:  # several groups a chunk: per word
        tl.store(sums_ptr + chunk.to(tl.int64) * WORDS + tl.arange(0, WORDS), tl.sum(tl.sum(x, axis=2), axis=0))


@triton.jit
def _gemv_ints_kernel(planes_ptr, positions_ptr, factors_ptr, sums_ptr, y_ptr, q_ptr, scale_ptr, min_ptr, N, K,
                      stride_ym, q_stride, ng, BITS: tl.constexpr, ASYM: tl.constexpr, WORDS: tl.constexpr,
                      GROUP_WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr, DP4A: tl.constexpr, BLOCK_N: tl.constexpr,
                      SPLIT_K: tl.constexpr):
    PER_WORD: tl.constexpr = 16 if BITS == 3 else 32 // BITS  # word_layout.codes_per_word
    VECTORS: tl.constexpr = PER_WORD // 4
    pid_n, m = tl.program_id(0), tl.program_id(1)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)
    words = tl.arange(0, WORDS)
    steps = K // (PER_WORD * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows start 16-byte aligned (q_stride = K·BITS/32 words, K a multiple of 4P; 3-bit: of 128, else 8-byte
    # aligned, of 64), plane words 16-byte aligned
    q_rows = code_rows(q_ptr, rows[:, None], q_stride, BITS, WORDS)
    acc = tl.zeros((BLOCK_N,), tl.float32)
    offsets = tl.zeros((BLOCK_N,), tl.float32)  # ASYM: the group minima times the chunks' x sums
    by_word = tl.zeros((BLOCK_N, WORDS), tl.float32)  # several groups a chunk: the same per (row, word)
    for step in range(first, last):
        low, high, even, odd = load_chunk(q_rows, step, 4, BITS, WORDS)
        chunk = m * steps + step
        planes = planes_ptr + tl.multiple_of(chunk.to(tl.int64) * (PLANES * VECTORS * WORDS) + words, 4)
        a0 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        a1 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        a2 = tl.zeros((BLOCK_N, WORDS), tl.int32)
        for vector in tl.static_range(VECTORS):
            codes = code_bytes(low, even, odd, vector, BITS)
            a0 = dot4(codes, tl.load(planes + vector * WORDS)[None, :], a0, False, True, DP4A)
            a1 = dot4(codes, tl.load(planes + (VECTORS + vector) * WORDS)[None, :], a1, False, False, DP4A)
            a2 = dot4(codes, tl.load(planes + (2 * VECTORS + vector) * WORDS)[None, :], a2, False, False, DP4A)
        total = a0 * 65536 + a1 * 256 + a2
        if not ASYM:  # codes c − 2^(B−1): take the offset times x's planes off, exactly
            total -= (1 << (BITS - 1)) * tl.load(positions_ptr + chunk.to(tl.int64) * WORDS + words)[None, :]
        if GROUP_WORDS == WORDS:
            group = rows * ng + step // GROUP_STEPS
            acc = tl.fma(tl.sum(total.to(tl.float32), axis=1), tl.load(scale_ptr + group) * tl.load(factors_ptr + chunk),
                         acc)
            if ASYM:
                offsets = tl.fma(tl.load(min_ptr + group), tl.load(sums_ptr + chunk), offsets)
        else:  # each word's group: the chunk's groups of GROUP_WORDS words
            group = rows[:, None] * ng + step * (WORDS // GROUP_WORDS) + words[None, :] // GROUP_WORDS
            by_word = tl.fma(total.to(tl.float32), tl.load(scale_ptr + group) * tl.load(factors_ptr + chunk), by_word)
            if ASYM:
                x_sums = tl.load(sums_ptr + chunk.to(tl.int64) * WORDS + words)[None, :]
                by_word = tl.fma(tl.load(min_ptr + group), x_sums, by_word)
    if GROUP_WORDS != WORDS:
        acc = tl.sum(by_word, axis=1)
    out = acc + offsets if ASYM else acc
    store_rows(y_ptr, stride_ym, out, N, BLOCK_N, SPLIT_K)


_gemv_ints = triton.autotune(configs=gemv_int_configs(),
                             key=["N", "K", "BITS", "ASYM", "WORDS", "GROUP_WORDS", "GROUP_STEPS"],
                             reset_to_zero=["y_ptr"])(_gemv_ints_kernel)


def split_chunks(weight, x) -> tuple:
    """x (M, K) float32 as `_split_chunks` writes it for `weight`'s chunks: (planes int32 (M, chunks, 3, P/4, W), or
    (M, chunks, 3, 16/B, W) in natural order for the 2:4 word layout of B-bit codes; sums of q per word position
    int32 (M, chunks, W), a placeholder for 2:4; factors float32 (M, chunks); x sums float32 (M, chunks), or
    (M, chunks, W) per word where a chunk holds several scale groups, a placeholder unless the codes are
    asymmetric)."""
    import torch

    from edgec.kernels.triton.word_layout import codes_per_word

    m, k = x.shape
    sparse, words = weight.meta is not None, weight.words
    vectors = 16 // weight.bits if sparse else codes_per_word(weight.bits) // 4  # 2:4: groups of a chunk word
    chunks = k // (4 * vectors * words)
    planes = torch.empty((m, chunks, PLANES.value, vectors, words), dtype=torch.int32, device=x.device)
    positions = torch.empty((1,) if sparse else (m, chunks, words), dtype=torch.int32, device=x.device)
    factors = torch.empty((m, chunks), dtype=torch.float32, device=x.device)
    span = words if sparse else weight.group_words
    sums = torch.empty(((m, chunks) + (() if span == words else (words,))) if weight.asym else (1,),
                       dtype=torch.float32, device=x.device)
    _split_chunks[(m, chunks)](x, planes, positions, factors, sums, k, x.stride(0), BITS=weight.bits,
                               ASYM=weight.asym, WORDS=words, GROUP_WORDS=span, SPARSE=sparse)
    return planes, positions, factors, sums


def gemv_ints(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a word-layout weight of 4-, 3- or 2-bit
    integer codes, autotuned."""
    planes, positions, factors, sums = split_chunks(weight, x)
    n, k = weight.shape
    grid = decode_grid(n, x.shape[0])
    _gemv_ints[grid](planes, positions, factors, sums, out, weight.q_words, weight.scale, weight.minv, n, k,
                     out.stride(0), weight.q_words.shape[1], weight.ng, BITS=weight.bits, ASYM=weight.asym,
                     WORDS=weight.words, GROUP_WORDS=weight.group_words, GROUP_STEPS=weight.group_steps,
                     DP4A=not _interpreted())
