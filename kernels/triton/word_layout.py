"""The decode GEMV's layout of codes: 32-bit words of P = 32 / bits values, interleaved per chunk.

Stored codes run along a row (4-bit two to a byte, 8-bit one, 16-bit two bytes each), so a
32-bit word holds P consecutive columns. A GPU thread that loads four words at once (one
128-bit load) would then need the inputs x[P·i .. P·i + P - 1] of each word: strided loads,
one per weight. `interleave` repacks each row's codes in chunks of P·W columns (W words):
value j of word i of a chunk holds column j·W + i of the chunk, so value j of the chunk's W
words pairs with the W contiguous inputs x[j·W .. j·W + W - 1], loaded as wide as the codes.
Chunks never straddle a scale group (`chunk_words` keeps P·W a divisor of the group, and of
K), and where no chunk of four words or more fits in a group (3-bit codes in groups of 32 or 64,
2-bit in groups of 32), a chunk holds several whole groups side by side: its W words are W/S
runs of S = group / P words (`group_words`), run r covering the group of columns r·S·P ..
r·S·P + S·P − 1, value j of its word i' column r·S·P + j·S + i' (with S = W, the rule above).
The prefill GEMMs read the same layout (`edgec.kernels.triton.gemm_words`), so a prepared
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
Chunks of 4 words (6 stored words) start only 8-byte aligned, so 3-bit codes take them only
where K leaves nothing wider (a multiple of 64 but not of 128, as SmolLM2's 576), read in
64-bit loads.
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
    """The chunk widths, in words of values, whose chunks start 16-byte aligned for `bits`-bit codes: 3-bit codes
    not 4 (6 stored words)."""
    return tuple(words for words in WORDS_PER_CHUNK if bits != 3 or words != 4)


def chunk_words(k: int, group: int | None, bits: int) -> int | None:
    """Words per chunk for `bits`-bit codes with K inputs and scale groups of `group` values along a row (None: one
    scale per row, or none): the widest 16-byte aligned chunk (`chunk_widths`) that divides K and the group, else,
    for groups of whole words smaller than any chunk, the widest that divides K into whole groups (`group_words`);
    for 3-bit codes then the same with 4-word chunks, 8-byte aligned (64-bit loads; a K that 128 does not divide,
    such as 576). None when nothing fits (the byte-layout GEMV then runs)."""
    per_word = codes_per_word(bits)
    aligned = chunk_widths(bits)
    for widths in (aligned, tuple(words for words in WORDS_PER_CHUNK if words not in aligned)):
        for words in widths:
            chunk = per_word * words
            if k % chunk == 0 and (group is None or group % chunk == 0):
                return words
        if group is not None and group % per_word == 0:
            for words in widths:
                if k % (per_word * words) == 0 and (per_word * words) % group == 0:
                    return words
    return None


def group_words(group: int | None, bits: int, words: int) -> int:
    """Words of a chunk of `words` words that share one scale group: all of them, or group / P where the chunk holds
    several groups (`chunk_words`)."""
    return words if group is None else min(words, group // codes_per_word(bits))


def interleave(q: np.ndarray, k: int, bits: int, words: int, span: int | None = None) -> np.ndarray:
    """Stored codes (N, K·bits/8) uint8, little-endian along the row, as (N, K·bits/32) uint32 words in the
    chunked layout of the module docstring, the words of a chunk in runs of `span` words per scale group (default:
    one run)."""
    n, per_word = q.shape[0], codes_per_word(bits)
    span = span or words
    if bits == 4:
        codes = np.empty((n, k), dtype=np.uint32)
        codes[:, 0::2] = q & 15
        codes[:, 1::2] = q >> 4
    elif bits in (2, 3):
        codes = unpack_bits(q, k, bits).astype(np.uint32)
    else:
        codes = np.ascontiguousarray(q).view(np.uint8 if bits == 8 else np.uint16).reshape(n, k)
    runs = codes.reshape(n, k // (per_word * words), words // span, per_word, span)  # [row, chunk, run, j, i']
    by_chunk = runs.transpose(0, 1, 3, 2, 4).reshape(n, -1, per_word, words)  # [row, chunk, value j, word i]
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


def sparse_code_bits(bits: int) -> int:
    """Bits per code in the 2:4 word layout of `bits`-bit codes: as stored, but 3-bit codes widen to 4 (one spare bit
    per kept code, 20 % more bytes than stored with the positions, for int4's kernels)."""
    return 4 if bits == 3 else bits


def sparse_vectors(bits: int) -> int:
    """Byte vectors (four codes, one per byte) a 32-bit word of `bits`-bit codes holds in the 2:4 word layout: 8 /
    bits (int8 1, int4 2, int2 4); each holds the kept codes of two groups of four inputs."""
    return 8 // bits


def sparse_chunk_words(k: int, group: int | None, bits: int) -> int | None:
    """Words per chunk of the 2:4 word layout for `bits`-bit codes (8, 4 or 2) with K inputs and scale groups of
    `group` kept values along a row (None: one scale per row), or None when no chunk fits (the byte layout stays).

    A chunk of W words covers 8·(8/bits)·W inputs and must divide K and the group; K must be a multiple of
    32·(8/bits) (int8 32, int4 64, int2 128), so that every row of code words starts 16-byte aligned for the
    kernels' 128-bit loads, and every row of meta words aligned to the meta of four code words."""
    vectors = sparse_vectors(bits)
    if k % (32 * vectors):
        return None
    for words in WORDS_PER_CHUNK:
        if k % (8 * vectors * words) == 0 and (group is None or group % (4 * vectors * words) == 0):
            return words
    return None


def sparse_interleave(q: np.ndarray, meta: np.ndarray, k: int, words: int, bits: int,
                      symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """A 2:4 weight's kept `bits`-bit codes (8, 4, 3 or 2; N x K/2 values, little-endian along the row) and position
    nibbles (N, K/8 bytes, low nibble first, `edgec.core.formats.sparse24`) in the 2:4 word layout: (code words
    uint32 (N, K/(8V)), meta words (N, K/(8V)) of 8V bits: uint8, uint16 or uint32), V = `sparse_vectors(bits)`.
    3-bit codes are laid out as the 4-bit codes of the same values (`sparse_code_bits`).

    A chunk is 2V·W groups of four inputs (8V·W columns). Group t = s·W + i of a chunk (slot s in 0..2V−1)
    belongs to word i: its kept codes sit at bits 8b + bits·v of the word, v = s // 2 and b = 2(s % 2) + (0 or 1
    for the first or second kept code), so that byte vector v of the word holds in its four bytes the kept codes
    of groups 2v·W + i (bytes 0, 1) and (2v + 1)·W + i (bytes 2, 3). Codes below 8 bits that are `symmetric`
    (value c − 2^(B−1)) are stored as c ^ 2^(B−1), which is c − 2^(B−1) in two's complement: moved to the top
    of a byte, a byte vector's codes are then signed bytes, (c − 2^(B−1))·2^(8−B), with no arithmetic.

    Each group's two kept positions i0 < i1 (2 bits each) sit in the word's meta word where the byte permute
    of `edgec.kernels.triton.gemv_sparse` wants them, nibbles i0, i1, i0', i1' (the second group's primed) of a
    16-bit selector: for slot s = 2v + h, i0 at bit 16(v // 2) + 2(v % 2) + 8h and i1 four bits above; with one
    vector (int8, 8-bit meta words) i0 at bit 2h and i1 at 4 + 2h.
    """
    codes = unpack_bits(q.view(np.uint8), k // 2, bits).astype(np.uint32)
    if bits == 3:  # as int4 codes of the same value: c + 4 (symmetric, value c − 4), c (asymmetric)
        codes += np.uint32(4 if symmetric else 0)
        bits = 4
    n, vectors = q.shape[0], sparse_vectors(bits)
    slots, chunks = 2 * vectors, k // (8 * vectors * words)
    if symmetric and bits < 8:
        codes ^= np.uint32(1 << (bits - 1))
    nibbles = np.empty((n, k // 4), dtype=np.uint32)
    nibbles[:, 0::2] = meta[:, :k // 8] & 15
    nibbles[:, 1::2] = meta[:, :k // 8] >> 4
    codes = codes.reshape(n, chunks, slots, words, 2)  # [row, chunk, slot s, word i, kept]
    nibbles = nibbles.reshape(n, chunks, slots, words)
    packed = np.zeros((n, chunks, words), dtype=np.uint32)
    packed_meta = np.zeros((n, chunks, words), dtype=np.uint32)
    for slot in range(slots):
        vector, h = divmod(slot, 2)
        for kept in range(2):
            packed |= codes[:, :, slot, :, kept] << np.uint32(8 * (2 * h + kept) + bits * vector)
        first = 2 * h if vectors == 1 else 16 * (vector // 2) + 2 * (vector % 2) + 8 * h
        packed_meta |= (nibbles[:, :, slot, :] & 3) << np.uint32(first)
        packed_meta |= (nibbles[:, :, slot, :] >> 2) << np.uint32(first + 4)
    meta_type = {1: np.uint8, 2: np.uint16, 4: np.uint32}[vectors]
    return packed.reshape(n, -1), packed_meta.astype(meta_type).reshape(n, -1)

