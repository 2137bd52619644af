"""The decode GEMV's layout of codes: 32-bit words of P = 32 / bits values, interleaved per chunk.

Stored codes run along a row (4-bit two to a byte, 8-bit one, 16-bit two bytes each), so a
32-bit word holds P consecutive columns. A GPU thread that loads four words at once (one
128-bit load) would then need the inputs x[P·i .. P·i + P - 1] of each word: strided loads,
one per weight. `interleave` repacks each row's codes in chunks of P·W columns (W words):
value j of word i of a chunk holds column j·W + i of the chunk, so value j of the chunk's W
words pairs with the W contiguous inputs x[j·W .. j·W + W - 1], loaded as wide as the codes.
Chunks never straddle a scale group (`chunk_words` keeps P·W a divisor of the group, and of
K), and the prefill GEMMs read the same layout (`edgec.kernels.triton.gemm_words`), so a prepared
weight holds one copy of its codes. The `.edgec` file keeps the stored layout: this is done
once, when a weight is prepared.

3-bit codes do not divide a word, so they come in two planes (`codes_per_word` is 16): a chunk
of 16·W columns is W low words, which hold the low two bits of 16 codes each (value j of word i
is column j·W + i again), then W/2 high words, which hold their third bits. In a low word the
code of value j = 2m sits at bits 4m, 4m + 1 and that of j = 2m + 1 at bits 4m + 2, 4m + 3; high
word u holds the third bits of low words 2u (values 2m at bit 4m + 2, 2m + 1 at 4m + 3) and
2u + 1 (at 4m and 4m + 1). So `(low & 0x33333333) | (high' & 0x44444444)`, with high' the high
word shifted left 2 for odd low words, puts the even values' codes in 4-bit slots, and the same
from `low >> 2` and `high' >> 1` the odd values': from there they decode as 4-bit codes do.
"""

from __future__ import annotations

import numpy as np

from edgec.core.formats.bitpack import unpack_bits

WORDS_PER_CHUNK = (16, 8, 4)
"""Chunk widths tried, in words (four words are one 128-bit load): the widest that divides K and the group."""


def codes_per_word(bits: int) -> int:
    """Codes a 32-bit word holds: 32 / bits, and 16 for 3-bit codes (their low two bits; the third bits of two
    low words fill one high word)."""
    return 16 if bits == 3 else 32 // bits


def stored_words(bits: int, words: int) -> int:
    """32-bit words a chunk of `words` words of values takes: `words`, and for 3-bit codes 1.5 times that."""
    return words * 3 // 2 if bits == 3 else words


def chunk_widths(bits: int) -> tuple[int, ...]:
    """The chunk widths, in words of values, `bits`-bit codes may take: 3-bit codes not 4 (6 stored words: chunks
    would not start 16-byte aligned)."""
    return tuple(words for words in WORDS_PER_CHUNK if bits != 3 or words != 4)


def chunk_words(k: int, group: int | None, bits: int) -> int | None:
    """Words per chunk for `bits`-bit codes with K inputs and scale groups of `group` values along a row (None: one
    scale per row, or none), or None when no chunk of four words or more fits (the byte-layout GEMV then runs)."""
    for words in chunk_widths(bits):
        chunk = codes_per_word(bits) * words
        if k % chunk == 0 and (group is None or group % chunk == 0):
            return words
    return None


def interleave(q: np.ndarray, k: int, bits: int, words: int) -> np.ndarray:
    """Stored codes (N, K·bits/8) uint8, little-endian along the row, as (N, K·bits/32) uint32 words in the
    chunked layout of the module docstring."""
    n, per_word = q.shape[0], codes_per_word(bits)
    if bits == 4:
        codes = np.empty((n, k), dtype=np.uint32)
        codes[:, 0::2] = q & 15
        codes[:, 1::2] = q >> 4
    elif bits in (2, 3):
        codes = unpack_bits(q, k, bits).astype(np.uint32)
    else:
        codes = np.ascontiguousarray(q).view(np.uint8 if bits == 8 else np.uint16).reshape(n, k)
    by_chunk = codes.reshape(n, k // (per_word * words), per_word, words)  # [row, chunk, value j, word i]
    if bits == 3:
        return _three_bit_planes(by_chunk).reshape(n, -1)
    if bits > 4:  # whole bytes: the transposed values, laid out little-endian, are the words
        return np.ascontiguousarray(by_chunk.transpose(0, 1, 3, 2)).view(np.uint32).reshape(n, k // per_word)
    packed = np.zeros((n, k // (per_word * words), words), dtype=np.uint32)
    for j in range(per_word):
        packed |= by_chunk[:, :, j, :] << np.uint32(bits * j)
    return packed.reshape(n, k // per_word)


def _three_bit_planes(by_chunk: np.ndarray) -> np.ndarray:
    """3-bit codes [row, chunk, value j (16), word i (W)] as [row, chunk, W low words then W/2 high words]."""
    n, chunks, _, words = by_chunk.shape
    low = np.zeros((n, chunks, words), dtype=np.uint32)
    high = np.zeros((n, chunks, words), dtype=np.uint32)  # each low word's third bits, placed for its parity
    for j in range(16):
        m, odd = divmod(j, 2)
        low |= (by_chunk[:, :, j, :] & 3) << np.uint32(4 * m + 2 * odd)
        third = by_chunk[:, :, j, :] >> 2
        high[:, :, 0::2] |= third[:, :, 0::2] << np.uint32(4 * m + 2 + odd)
        high[:, :, 1::2] |= third[:, :, 1::2] << np.uint32(4 * m + odd)
    return np.concatenate([low, high[:, :, 0::2] | high[:, :, 1::2]], axis=2)


def sparse_interleave(q: np.ndarray, meta: np.ndarray, k: int, words: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2:4 weight's kept int4 codes (N, K/4 bytes: the (N, K/2) kept values, little-endian) and position nibbles
    (N, K/8 bytes, low nibble first, `edgec.core.formats.sparse24`) in the 2:4 word layout: (words uint32 (N, K/16),
    meta uint16 (N, K/16)).

    A chunk is 4W groups of four inputs (16W columns, 8W kept codes). Group t = s·W + i of a chunk (slot s in
    0..3) belongs to word i: its two kept codes sit in nibbles 2b + v of the word, v = s // 2 and b = 2(s % 2) +
    (0 or 1 for the first or second kept code), so that `(word >> 4v) & 0x0F0F0F0F` holds in its four bytes the
    kept codes of groups 2v·W + i (bytes 0, 1) and (2v + 1)·W + i (bytes 2, 3); and its position nibble is nibble
    s of the word's meta half-word. The inputs a byte vector meets are then two whole 4-byte groups of x, which one
    byte permute (`edgec.kernels.triton.gemv_sparse`) picks from by the four positions.
    """
    n, chunks = q.shape[0], k // (16 * words)
    codes = np.empty((n, k // 2), dtype=np.uint32)
    codes[:, 0::2] = q & 15
    codes[:, 1::2] = q >> 4
    nibbles = np.empty((n, k // 4), dtype=np.uint32)
    nibbles[:, 0::2] = meta[:, :k // 8] & 15
    nibbles[:, 1::2] = meta[:, :k // 8] >> 4
    codes = codes.reshape(n, chunks, 4, words, 2)  # [row, chunk, slot s, word i, kept]
    nibbles = nibbles.reshape(n, chunks, 4, words)
    packed = np.zeros((n, chunks, words), dtype=np.uint32)
    packed_meta = np.zeros((n, chunks, words), dtype=np.uint32)
    for slot in range(4):
        for kept in range(2):
            packed |= codes[:, :, slot, :, kept] << np.uint32(4 * (2 * (2 * (slot % 2) + kept) + slot // 2))
        packed_meta |= nibbles[:, :, slot, :] << np.uint32(4 * slot)
    return packed.reshape(n, -1), packed_meta.astype(np.uint16).reshape(n, -1)

