"""Decoding the word layout's codes (`edgec.kernels.triton.word_layout`) in registers: value j of each 32-bit word,
as float32, for the decode GEMV and the prefill GEMM.

Integers come out exact, from the code's bits placed in the mantissa of 2^23 (one LOP3) and one
FFMA that removes 2^23 and the offset (`exact_int`). The exponent bits are read from memory
(`exponent`, the float 2^23 as bits) rather than written as a constant: as an immediate or a
constant-bank operand, ptxas splits each LOP3 in two on sm_89.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def exact_int(word, exponent, sh: tl.constexpr, mask: tl.constexpr, offset: tl.constexpr):
    """The code (word >> sh) & mask minus `offset`, as float32, exactly (c·2^sh < 2^23): one LOP3 and one FFMA."""
    biased = ((word & (mask << sh)) | exponent).to(tl.float32, bitcast=True)
    return tl.fma(biased, 1.0 / (1 << sh), -(8388608.0 / (1 << sh) + offset))


@triton.jit
def chunk_column(word, value, WORDS: tl.constexpr, GROUP_WORDS: tl.constexpr, PER_WORD: tl.constexpr):
    """The chunk column that value `value` of word `word` holds (`word_layout`): value·W + word where a scale group
    spans the chunk, else in the run of GROUP_WORDS words of the word's group."""
    if GROUP_WORDS == WORDS:
        return value * WORDS + word
    else:
        return (word // GROUP_WORDS) * (GROUP_WORDS * PER_WORD) + value * GROUP_WORDS + word % GROUP_WORDS


@triton.jit
def word_halves(low, KIND: tl.constexpr):
    """What `word_value` reads of a step's words: int4's words and the same shifted down 12 bits (so every code sits
    at bit 0, 4, 8, 12 or 16), int8's with their sign bits flipped (c + 128, unsigned) and that shifted down 16,
    the words themselves otherwise."""
    if KIND == 4:
        return low, low >> 12
    elif KIND == 3:
        flipped = low ^ 0x80808080
        return flipped, flipped >> 16
    else:
        return low, low


@triton.jit
def code_rows(q_ptr, rows, q_stride, BITS: tl.constexpr, WORDS: tl.constexpr):
    """Pointers to the starts of rows `rows` (BLOCK_N, 1) of word-layout codes, with the alignment their chunks' loads
    may assume: 16 bytes, or 8 for 3-bit codes in 4-word chunks (6 stored words, `word_layout.chunk_words`)."""
    ALIGN: tl.constexpr = 2 if BITS == 3 and WORDS == 4 else 4
    return q_ptr + tl.multiple_of(rows * q_stride, [ALIGN, 1])


@triton.jit
def load_chunk(row_ptr, step, KIND: tl.constexpr, BITS: tl.constexpr, WORDS: tl.constexpr):
    """Chunk `step` of rows starting at `row_ptr` (BLOCK_N, 1), as `chunk_value` reads it: (low, high, even, odd),
    (BLOCK_N, WORDS) each: `word_halves` of its words, or for 3-bit codes `three_bit_slots` of its two planes."""
    words = tl.arange(0, WORDS)[None, :]
    start = row_ptr + step * (WORDS * 3 // 2 if BITS == 3 else WORDS)
    low = tl.load(start + words).to(tl.uint32, bitcast=True)
    if BITS == 3:
        high = tl.load(start + WORDS + words // 2).to(tl.uint32, bitcast=True)
        even, odd = three_bit_slots(low, high, words % 2 == 1)
        return low, high, even, odd
    else:
        low, high = word_halves(low, KIND)
        return low, high, low, high


@triton.jit
def three_bit_slots(low, high, odd_word):
    """3-bit codes (the two planes of `edgec.kernels.triton.word_layout`) in 4-bit slots: (even values, odd values),
    8 codes each. `high` is each low word's high word, `odd_word` whether the low word is the second of its pair."""
    shifted = tl.where(odd_word, high << 2, high)
    even = (low & 0x33333333) | (shifted & 0x44444444)
    odd = ((low >> 2) & 0x33333333) | ((shifted >> 1) & 0x44444444)
    return even, odd


@triton.jit
def word_value(low, high, exponent, lut_ptr, j: tl.constexpr, KIND: tl.constexpr, BITS: tl.constexpr,
               ASYM: tl.constexpr, NATIVE_FP8: tl.constexpr):
    """Value j of each word, from `word_halves`, as float32 before any scale: B-bit integers (B = 4 or 2, or 3
    from `three_bit_slots`, in 4-bit slots) c − 2^(B−1) (ASYM: c), int8 c, nf4's table value, fp8's value (divided by
    256 where the GPU has no e4m3 conversion, NATIVE_FP8 False), f16 and bf16 as they are."""
    if KIND == 4:  # codes in 4-bit slots (2-bit: 2-bit slots); the first half from `low`, the rest from `high`
        SLOT: tl.constexpr = 2 if BITS == 2 else 4
        HALF: tl.constexpr = 8 if BITS == 2 else 4
        return exact_int(low if j < HALF else high, exponent, SLOT * j if j < HALF else SLOT * j - 12,
                         (1 << BITS) - 1, 0.0 if ASYM else (1 << (BITS - 1)) * 1.0)
    elif KIND == 5:
        return tl.load(lut_ptr + ((low >> (4 * j)) & 15).to(tl.int32))
    elif KIND == 3:
        return exact_int(low if j < 2 else high, exponent, 8 * (j % 2), 255, 128.0)
    elif KIND == 2:
        code = (low >> (8 * j)) & 255
        if NATIVE_FP8:
            return code.to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
        else:  # the float16 with the code's sign, exponent and mantissa bits: the value / 256, exactly
            return (((code & 0x80) << 8) | ((code & 0x7F) << 7)).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        return half_value(low, j, KIND)


@triton.jit
def half_value(pairs, j: tl.constexpr, KIND: tl.constexpr):
    """Half-word j of 32-bit words holding two float16 (KIND 0) or bfloat16 (KIND 1) values, as float32."""
    if KIND == 0:
        return ((pairs & 0xFFFF) if j == 0 else (pairs >> 16)).to(tl.uint16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        return ((pairs << 16) if j == 0 else (pairs & 0xFFFF0000)).to(tl.float32, bitcast=True)


@triton.jit
def chunk_value(low, high, even, odd, exponent, lut_ptr, j: tl.constexpr, KIND: tl.constexpr, BITS: tl.constexpr,
                ASYM: tl.constexpr, NATIVE_FP8: tl.constexpr):
    """Value j of each word of a chunk: from `word_halves`' (low, high), or for 3-bit codes from
    `three_bit_slots`' (even, odd), where value j is slot j // 2 of one of them."""
    if BITS == 3:
        slots = even if j % 2 == 0 else odd
        return word_value(slots, slots >> 12, exponent, lut_ptr, j // 2, KIND, BITS, ASYM, NATIVE_FP8)
    else:
        return word_value(low, high, exponent, lut_ptr, j, KIND, BITS, ASYM, NATIVE_FP8)


@triton.jit
def load_pairs(pairs, index):
    """Pairs `index` of float32 pairs from `pairs` (a scalar pointer, 8-byte aligned) as (first, second): one 64-bit
    load each, split in registers. (Loaded as float32 vectors and split with `tl.split`, Triton moves the tile
    through shared memory to match layouts.)"""
    pair = tl.load(pairs.to(tl.pointer_type(tl.int64), bitcast=True) + index).to(tl.uint64, bitcast=True)
    return ((pair & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True),
            (pair >> 32).to(tl.uint32).to(tl.float32, bitcast=True))


@triton.jit
def code_offsets(words):
    """nf4 codes as byte offsets into a float32 table, 4·c in each byte: (the even codes, the odd codes) of each
    32-bit word, codes 2b and 2b + 1 in byte b."""
    return (words << 2) & 0x3C3C3C3C, (words >> 2) & 0x3C3C3C3C


@triton.jit
def table_values(offsets, table, ASM: tl.constexpr):
    """The four float32 values of `table` at the byte offsets in bytes 0 to 3 of `offsets` (`code_offsets`). Where
    ASM (compiled for a GPU, `table` 256-byte aligned) each offset replaces the low byte of the table's address, one
    PRMT, and its value is one `ld.global.nc`, in inline PTX: from Triton's pointer arithmetic ptxas made a 64-bit
    LEA pair per value after a shift and a bit-field extract (6 instructions a value where this takes 4.5)."""
    if ASM:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 low, high, at; .reg .b64 address; mov.b64 {low, high}, $5; "
            "prmt.b32 at, $4, low, 0x7650; mov.b64 address, {at, high}; ld.global.nc.f32 $0, [address]; "
            "prmt.b32 at, $4, low, 0x7651; mov.b64 address, {at, high}; ld.global.nc.f32 $1, [address]; "
            "prmt.b32 at, $4, low, 0x7652; mov.b64 address, {at, high}; ld.global.nc.f32 $2, [address]; "
            "prmt.b32 at, $4, low, 0x7653; mov.b64 address, {at, high}; ld.global.nc.f32 $3, [address]; }",
            "=f,=f,=f,=f,r,l", [offsets, table.to(tl.int64, bitcast=True)], dtype=(tl.float32,) * 4, is_pure=True,
            pack=1)
    else:
        return (tl.load(table + (offsets & 255) // 4), tl.load(table + ((offsets >> 8) & 255) // 4),
                tl.load(table + ((offsets >> 16) & 255) // 4), tl.load(table + (offsets >> 24) // 4))


@triton.jit
def load_in_place(pointers, ASM: tl.constexpr):
    """float32 values at `pointers`, in the pointers' own layout where ASM (compiled for a GPU: one `ld.global.nc`
    per element, inline PTX); `tl.load` in the interpreter. Triton gives each `tl.load` a layout of its own: a tile's
    (rows, 1) scales loaded so took one per thread and went through shared memory, behind barriers, to meet the
    tile every step."""
    if ASM:
        return tl.inline_asm_elementwise("ld.global.nc.f32 $0, [$1];", "=f,l", [pointers], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.load(pointers)
