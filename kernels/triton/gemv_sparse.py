"""The decode GEMVs for 2:4 weights: `gemv_sparse` (int8, int4, int3 and int2 codes, in integers) and
`gemv_sparse_floats` (fp16, bf16, fp8 and nf4 values, in float32).

A 2:4 weight keeps two of each four inputs' weights, so each kept code meets the input at its
kept position: the gather the byte layout pays a byte load and column arithmetic per code for
(210 lane-instructions per stored byte at int4).

Integer codes come in the 2:4 word layout (`word_layout.sparse_interleave`) and x in `gemv_ints`'
three byte planes, in natural order (plane word g holds the four inputs of group g). A byte vector
of a code word (V = 8 / B of them: int8 1, int4 2, int2 4) holds the kept codes of two groups,
whose plane words are two registers; one PRMT (byte permute, selector nibbles = the four kept
positions, the second group's plus 4) picks the four inputs they meet from those eight bytes, and
one DP4A per plane multiplies them. The meta word holds the positions where the selectors want
them (`vector_selector`: a mask and an OR for two vectors' selectors, a shift for the odd ones).
Symmetric codes are stored as c ^ 2^(B−1): moved to the top of each byte with one shift and a
mask they are signed bytes (c − 2^(B−1))·2^(8−B), and the scale takes the 2^(8−B) back (no per-chunk
sum could take an offset off: the inputs a row's codes meet depend on its positions).
Asymmetric codes stay low, unsigned, and one more DP4A per plane, with 0x01010101, sums the kept
inputs the group minimum multiplies. A thread adds a row's words into the same accumulators, four
(one 128-bit load) at a time, and each plane's sum is exact in int32.

In Triton's interpreter, which runs no inline assembly, `permute_bytes` and `dot4` compute the same
bytes themselves (DP4A False).

Float values need no repacking: as stored, a 32-bit word holds the kept pairs of 1, 2 or 4 groups
(16-, 8-, 4-bit values) and the meta 4 bits a group. `input_pairs` first writes, per x row, each
group's two inputs for every position nibble; `_gemv_sparse_floats` loads a chunk of W words of a
row (128 bits at a time) with their meta bits and takes each kept pair's inputs with one 64-bit load
from its group's table, at the nibble, and multiplies in float32; nf4's kept values are a load
each from its 16-value table (`word_values.table_values`), whose 64 bytes, like a group's table
of input pairs, lie on one cache line for all of a warp's loads.
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.gemv_ints import PLANES, dot4, split_chunks
from edgec.kernels.triton.gemv_words import decode_configs, k_split, store_rows
from edgec.kernels.triton.matmul import _interpreted, decode_grid
from edgec.kernels.triton.word_values import code_offsets, load_pairs, table_values, word_value

GEMV_SPARSE_BLOCKS = ((256, 4), (512, 8), (128, 4))
"""BLOCK_N, warps of both 2:4 GEMVs, whose threads keep whole rows: two rows a thread first (the leanest loops),
then one."""
SPARSE_FLOAT_WORDS = (16, 8, 4)
"""32-bit words of kept values per row and step of `_gemv_sparse_floats`: the widest that fits K and the group."""
SPARSE_FLOAT_KINDS = (0, 1, 2, 5)
"""KINDs `_gemv_sparse_floats` and the 2:4 GEMM read as stored: f16, bf16, fp8, nf4."""


def sparse_float_fits(weight) -> bool:
    """Whether a 2:4 weight's values are read as stored by `_gemv_sparse_floats` and `_gemm_sparse`: fp16, bf16, fp8
    or nf4 where `sparse_float_words` finds a step."""
    return (weight.meta is not None and not weight.words and weight.kind in SPARSE_FLOAT_KINDS
            and stored_words(weight) is not None)


def stored_words(weight) -> int | None:
    """`sparse_float_words` for a 2:4 weight of values as stored (nf4's groups bound the step)."""
    return sparse_float_words(weight.shape[1], weight.bits, weight.group if weight.kind == 5 else None)


def gemv_sparse_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 decode, integers and floats."""
    return decode_configs(GEMV_SPARSE_BLOCKS)


def sparse_float_words(k: int, bits: int, group: int | None) -> int | None:
    """Words of values per row and step for a 2:4 weight of `bits`-bit values (16, 8 or 4) as stored, with K inputs
    and scale groups of `group` values (None: one scale per row, or none): a step covers 4·(16/bits) inputs a word
    and must divide K (which keeps rows of values 16-byte aligned) and the group; None when no step of four words
    or more fits (the byte-layout GEMV then runs)."""
    groups = 16 // bits
    for words in SPARSE_FLOAT_WORDS:
        if k % (4 * groups * words) == 0 and (group is None or group % (2 * groups * words) == 0):
            return words
    return None


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
def vector_selector(meta, vector: tl.constexpr, VECTORS: tl.constexpr):
    """The PRMT selector of byte vector `vector` of a code word from its meta word (int32; the 2:4 word layout's,
    `word_layout.sparse_interleave`): nibbles i0, i1 of the vector's first group and i0 + 4, i1 + 4 of its second
    (whose inputs are the permute's high word). The layout puts the positions where they go: a mask and the 4s
    make the selectors of vectors v and v + 2 at once, in the low and high half-words (the permute reads the low
    one), vectors 1 and 3 after a shift by 2; int8's 8-bit meta words hold the second group's bits one shift lower."""
    if VECTORS == 1:
        return ((meta | (meta << 6)) & 0x3333) | 0x4400
    else:
        both = ((meta >> (2 * (vector % 2))) & 0x33333333) | 0x44004400  # the same for v and v + 2: computed once
        return both >> (16 * (vector // 2))


@triton.jit
def meta_word(meta, VECTORS: tl.constexpr):
    """Meta words of the 2:4 word layout as loaded (uint8, int16 or int32 for 1, 2 or 4 byte vectors a code word)
    as int32, the narrow ones zero-extended."""
    if VECTORS == 1:
        return meta.to(tl.uint8, bitcast=True).to(tl.int32)
    elif VECTORS == 2:
        return meta.to(tl.uint16, bitcast=True).to(tl.int32)
    else:
        return meta


@triton.jit
def slot_positions(meta, slot: tl.constexpr, VECTORS: tl.constexpr):
    """The kept positions (i0, i1) of the group in slot `slot` of a code word, from its meta word (int32)."""
    selector = vector_selector(meta, slot // 2, VECTORS) >> (8 * (slot % 2))
    return selector & 3, (selector >> 4) & 3


@triton.jit
def _planes_total(a0, a1, a2, SHIFT: tl.constexpr, LARGEST: tl.constexpr):
    """Per row, the sum over its words of a0·65536 + a1·256 + a2 (int32 (BLOCK_N, 4) each, every term a multiple
    of 2^SHIFT) over 2^SHIFT, in float32. Each plane's row sum is exact in int32; the planes join in int32 where
    LARGEST, a bound on the whole sum, is below 2^31, else a0 joins in float32 (a1·256 + a2 stays below 2^31 for
    every kind: at most 256 inputs times 128 times 65535)."""
    if LARGEST < 2**31:
        whole = (tl.sum(a0, axis=1) << 16) + (tl.sum(a1, axis=1) << 8) + tl.sum(a2, axis=1)
        return whole.to(tl.float32) * (1.0 / (1 << SHIFT))
    else:
        lower = (tl.sum(a1, axis=1) << 8) + tl.sum(a2, axis=1)
        return tl.fma(tl.sum(a0, axis=1).to(tl.float32), 65536.0 / (1 << SHIFT), lower.to(tl.float32) * (1.0 / (1 << SHIFT)))


@triton.jit
def _gemv_sparse_kernel(planes_ptr, factors_ptr, y_ptr, q_ptr, meta_ptr, scale_ptr, min_ptr, N, K, stride_ym, q_stride,
                        ng, BITS: tl.constexpr, ASYM: tl.constexpr, WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr,
                        DP4A: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr):
    VECTORS: tl.constexpr = 8 // BITS  # word_layout.sparse_vectors
    SLOTS: tl.constexpr = 2 * VECTORS  # groups of four inputs a code word holds
    TOP: tl.constexpr = -0x0F0F0F10 if BITS == 4 else -0x3F3F3F40  # 0xF0F0F0F0, 0xC0C0C0C0: codes atop each byte
    LOW: tl.constexpr = 0x0F0F0F0F if BITS == 4 else 0x03030303
    # symmetric codes sit atop their bytes, c·2^(8−B) for c in [−2^(B−1), 2^(B−1)): signed, no arithmetic; the sums
    # are 2^SHIFT times too large. Asymmetric ones (unsigned) stay low.
    SHIFT: tl.constexpr = 0 if ASYM or BITS == 8 else 8 - BITS
    CODE_MAX: tl.constexpr = (1 << BITS) - 1 if ASYM else 128  # the largest |code byte|
    INPUTS: tl.constexpr = 4 * VECTORS * WORDS  # inputs a row's step meets in each plane: bounds the sums
    pid_n, m = tl.program_id(0), tl.program_id(1)
    rows = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)
    quad = tl.arange(0, 4)  # a thread's four words of a row: one 128-bit load
    steps = K // (4 * SLOTS * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows of codes (q_stride words) start 16-byte aligned, rows of meta words (as many) aligned to four of them:
    # K is a multiple of 32·V (`sparse_chunk_words`)
    q_rows = q_ptr + tl.multiple_of(rows[:, None] * q_stride, [4, 1])
    meta_rows = meta_ptr + tl.multiple_of(rows[:, None] * q_stride, [4, 1])
    acc = tl.zeros((BLOCK_N,), tl.float32)
    offsets = tl.zeros((BLOCK_N,), tl.float32)  # ASYM: the group minima times the kept inputs' sums
    ones = tl.full((BLOCK_N, 4), 0x01010101, tl.int32)  # ASYM: a DP4A with these sums a permuted word's bytes
    for step in range(first, last):
        chunk = m * steps + step
        a0 = tl.zeros((BLOCK_N, 4), tl.int32)
        a1 = tl.zeros((BLOCK_N, 4), tl.int32)
        a2 = tl.zeros((BLOCK_N, 4), tl.int32)
        kept0 = tl.zeros((BLOCK_N, 4), tl.int32)  # ASYM: the kept inputs' planes, summed
        kept1 = tl.zeros((BLOCK_N, 4), tl.int32)
        kept2 = tl.zeros((BLOCK_N, 4), tl.int32)
        # the chunk's words four at a time, into the same accumulators: a thread keeps whole rows, which it sums
        # without shuffles
        for words in tl.static_range(0, WORDS, 4):
            code_words = tl.load(q_rows + step * WORDS + words + quad[None, :])
            meta = meta_word(tl.load(meta_rows + step * WORDS + words + quad[None, :]), VECTORS)
            planes = planes_ptr + tl.multiple_of(chunk.to(tl.int64) * (PLANES * SLOTS * WORDS) + words + quad, 4)
            for vector in tl.static_range(VECTORS):
                if BITS == 8:
                    codes = code_words
                elif ASYM:
                    codes = (code_words >> (BITS * vector)) & LOW
                else:  # stored c ^ 2^(B−1), atop each byte: (c − 2^(B−1))·2^(8−B) as a signed byte
                    codes = (code_words << (8 - BITS * (vector + 1))) & TOP
                selector = vector_selector(meta, vector, VECTORS)
                low = planes + 2 * vector * WORDS  # plane 0 of the vector's first group; its second's is W on
                x0 = permute_bytes(tl.load(low)[None, :], tl.load(low + WORDS)[None, :], selector, DP4A)
                x1 = permute_bytes(tl.load(low + SLOTS * WORDS)[None, :], tl.load(low + (SLOTS + 1) * WORDS)[None, :],
                                   selector, DP4A)
                x2 = permute_bytes(tl.load(low + 2 * SLOTS * WORDS)[None, :],
                                   tl.load(low + (2 * SLOTS + 1) * WORDS)[None, :], selector, DP4A)
                a0 = dot4(codes, x0, a0, not ASYM, True, DP4A)
                a1 = dot4(codes, x1, a1, not ASYM, False, DP4A)
                a2 = dot4(codes, x2, a2, not ASYM, False, DP4A)
                if ASYM:
                    kept0 = dot4(ones, x0, kept0, False, True, DP4A)
                    kept1 = dot4(ones, x1, kept1, False, False, DP4A)
                    kept2 = dot4(ones, x2, kept2, False, False, DP4A)
        # each plane summed over the row's words in int32, the planes joined and freed of 2^(8−B) (`_planes_total`)
        total = _planes_total(a0, a1, a2, SHIFT, INPUTS * CODE_MAX * 128 * 65536)
        factor = tl.load(factors_ptr + chunk)
        if BITS == 8:  # one scale per row, taken at the end
            acc = tl.fma(total, factor, acc)
        else:
            group = rows * ng + step // GROUP_STEPS
            acc = tl.fma(total, tl.load(scale_ptr + group) * factor, acc)
            if ASYM:
                kept = _planes_total(kept0, kept1, kept2, 0, INPUTS * 128 * 65536)
                offsets = tl.fma(kept, tl.load(min_ptr + group) * factor, offsets)
    if BITS == 8:
        out = acc * tl.load(scale_ptr + rows)
    elif ASYM:
        out = acc + offsets
    else:
        out = acc
    store_rows(y_ptr, stride_ym, out, N, BLOCK_N, SPLIT_K)


_gemv_sparse = triton.autotune(configs=gemv_sparse_configs(), key=["N", "K", "BITS", "ASYM", "WORDS", "GROUP_STEPS"],
                               reset_to_zero=["y_ptr"])(_gemv_sparse_kernel)


PAIR_BLOCK = 64
"""Groups of four inputs per program of `_input_pairs`."""


@triton.jit
def _input_pairs(x_ptr, pairs_ptr, K, stride_xm, BLOCK: tl.constexpr):
    """For each group of four inputs of x row m and each position nibble n (i0 | i1 << 2), the pair (x[4g + i0],
    x[4g + i1]) at pairs[m, g, n]: float32 (M, K/4, 16, 2)."""
    m, block = tl.program_id(0), tl.program_id(1)
    groups = block * BLOCK + tl.arange(0, BLOCK)[:, None]
    nibble = tl.arange(0, 16)[None, :]
    inside = (groups < K // 4) & (nibble < 16)  # the groups in x, broadcast over the 16 nibbles
    inputs = x_ptr + m.to(tl.int64) * stride_xm + 4 * groups
    out = pairs_ptr + (m.to(tl.int64) * (K // 4) + groups) * 32 + 2 * nibble
    tl.store(out, tl.load(inputs + (nibble & 3), mask=inside), mask=inside)
    tl.store(out + 1, tl.load(inputs + (nibble >> 2), mask=inside), mask=inside)


def input_pairs(x):
    """x (M, K) float32 as `_input_pairs` writes it: each group's inputs at every pair of kept positions."""
    import torch

    m, k = x.shape
    pairs = torch.empty((m, k // 4, 16, 2), dtype=torch.float32, device=x.device)
    _input_pairs[(m, triton.cdiv(k // 4, PAIR_BLOCK))](x, pairs, k, x.stride(0), BLOCK=PAIR_BLOCK)
    return pairs


@triton.jit
def kept_values(values, h: tl.constexpr, lut_ptr, KIND: tl.constexpr, BITS: tl.constexpr, NATIVE_FP8: tl.constexpr):
    """The two kept values of group h of 32-bit words of `BITS`-bit values as stored (f16, bf16, fp8 (divided by 256
    where NATIVE_FP8 is False)), as float32 before any scale: (first, second). (nf4's come from `table_values`.)"""
    shifted = values >> (2 * BITS * h)
    return (word_value(shifted, shifted, shifted, lut_ptr, 0, KIND, BITS, False, NATIVE_FP8),
            word_value(shifted >> BITS, shifted, shifted, lut_ptr, 0, KIND, BITS, False, NATIVE_FP8))


@triton.jit
def _gemv_sparse_floats_kernel(pairs_ptr, y_ptr, q_ptr, meta_ptr, scale_ptr, lut_ptr, N, K, stride_ym, q_stride,
                               meta_stride, ng, KIND: tl.constexpr, BITS: tl.constexpr, WORDS: tl.constexpr,
                               GROUP_STEPS: tl.constexpr, NATIVE_FP8: tl.constexpr, ASM: tl.constexpr,
                               BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr):
    GROUPS: tl.constexpr = 16 // BITS  # groups of four inputs whose kept values a 32-bit word holds
    pid_n, m = tl.program_id(0), tl.program_id(1)
    row = tl.minimum(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), N - 1).to(tl.int64)
    rows = row[:, None]
    quad = tl.arange(0, 4)[None, :]  # a thread's four words of a row: one 128-bit load
    steps = K // (4 * GROUPS * WORDS)
    first, last = k_split(steps, SPLIT_K)
    # rows of values start aligned to a chunk's 128-bit loads (K a multiple of 4·GROUPS·W), pairs to 64-bit ones
    q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
    meta_rows = meta_ptr + rows * meta_stride
    pairs_row = pairs_ptr + m.to(tl.int64) * (K // 4) * 32
    acc = tl.zeros((BLOCK_N,), tl.float32)  # nf4: the scaled sums
    part = tl.zeros((BLOCK_N, 4), tl.float32)  # a thread's sums of its rows' words (nf4: of a step's)
    for step in range(first, last):
        # a chunk's words four at a time, into the same sums: a thread keeps whole rows, so every lane of a warp
        # reads the same words' tables of input pairs, and a step's sum and scale need no shuffles or layout changes
        pairs_step = pairs_row + step * (32 * GROUPS * WORDS)
        for words in tl.static_range(0, WORDS, 4):
            word = step * WORDS + words + quad
            values = tl.load(q_rows + word).to(tl.uint32, bitcast=True)
            if GROUPS == 1:  # a position nibble per word, low nibble first
                positions = (tl.load(meta_rows + word // 2).to(tl.int32) >> (4 * (word % 2))) & 15
            elif GROUPS == 2:  # a meta byte per word
                positions = tl.load(meta_rows + word).to(tl.int32)
            else:  # a 16-bit meta word per word
                positions = tl.load(meta_rows + word).to(tl.uint16, bitcast=True).to(tl.int32)
            if KIND == 5:  # group h's two codes are byte h's nibbles: each value from the 16-value table
                even_codes, odd_codes = code_offsets(values)
                firsts, seconds = table_values(even_codes, lut_ptr, ASM), table_values(odd_codes, lut_ptr, ASM)
            for h in tl.static_range(GROUPS):
                if KIND == 5:
                    first_value, second_value = firsts[h], seconds[h]
                else:
                    first_value, second_value = kept_values(values, h, lut_ptr, KIND, BITS, NATIVE_FP8)
                # the group's table (32 floats) first: the nibble then adds to its address alone, where a sum of
                # both took a sign-extended 64-bit add per load
                first_input, second_input = load_pairs(pairs_step + 32 * (GROUPS * (words + quad) + h),
                                                       (positions >> (4 * h)) & 15)
                part = tl.fma(first_value, first_input, part)
                part = tl.fma(second_value, second_input, part)
        if KIND == 5:  # the group's scale
            acc = tl.fma(tl.sum(part, axis=1), tl.load(scale_ptr + row * ng + step // GROUP_STEPS), acc)
            part = tl.zeros((BLOCK_N, 4), tl.float32)
    out = acc if KIND == 5 else tl.sum(part, axis=1)
    if KIND == 2:  # one scale per row (times 256 where the codes decoded as their value / 256)
        out *= tl.load(scale_ptr + row) * (1.0 if NATIVE_FP8 else 256.0)
    store_rows(y_ptr, stride_ym, out, N, BLOCK_N, SPLIT_K)


_gemv_sparse_floats = triton.autotune(configs=gemv_sparse_configs(),
                                      key=["N", "K", "KIND", "BITS", "WORDS", "GROUP_STEPS", "NATIVE_FP8"],
                                      reset_to_zero=["y_ptr"])(_gemv_sparse_floats_kernel)


def stored_meta(weight):
    """A 2:4 weight's position nibbles as `_gemv_sparse_floats` reads them: bytes, or 16-bit words for 4-bit values
    (four groups a word of values)."""
    import torch

    return weight.meta.view(torch.int16) if weight.bits == 4 else weight.meta


def gemv_sparse_floats(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a 2:4 weight of fp16, bf16, fp8 or nf4
    values as stored (`sparse_float_words` not None), autotuned. ValueError where nf4's value table is misaligned
    (`weights.value_table`)."""
    import torch

    from edgec.kernels.triton.matmul import native_fp8
    from edgec.kernels.triton.weights import value_table

    n, k = weight.shape
    table = value_table(weight)
    words = stored_words(weight)
    meta = stored_meta(weight)
    grid = decode_grid(n, x.shape[0])
    _gemv_sparse_floats[grid](input_pairs(x), out, weight.q.view(torch.int32), meta, weight.scale, table, n, k,
                              out.stride(0), weight.q.shape[1] // 4, meta.shape[1], weight.ng, KIND=weight.kind,
                              BITS=weight.bits, WORDS=words, GROUP_STEPS=float_group_steps(weight, words),
                              NATIVE_FP8=weight.kind != 2 or native_fp8(x.device), ASM=not _interpreted())


def float_group_steps(weight, words: int) -> int:
    """Steps of `_gemv_sparse_floats` (W words of values) per scale group: nf4's, or 1."""
    return weight.group // (words * 32 // weight.bits) if weight.kind == 5 else 1


def gemv_sparse(weight, x, out) -> None:
    """y = x @ W^T into `out` (M < 16 rows of float32 x, rows contiguous) for a 2:4 weight of int8, int4, int3 (as
    int4 codes) or int2 codes in the 2:4 word layout, autotuned."""
    planes, _, factors, _ = split_chunks(weight, x)
    n, k = weight.shape
    grid = decode_grid(n, x.shape[0])
    _gemv_sparse[grid](planes, factors, out, weight.q_words, weight.meta_words, weight.scale, weight.minv, n, k,
                       out.stride(0), weight.q_words.shape[1], weight.ng, BITS=weight.bits, ASYM=weight.asym,
                       WORDS=weight.words, GROUP_STEPS=weight.group_steps, DP4A=not _interpreted())
