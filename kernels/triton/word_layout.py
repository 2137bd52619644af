"""The decode GEMV's layout of codes: 32-bit words of P = 32 / bits values, interleaved per chunk.

Stored codes run along a row (4-bit two to a byte, 8-bit one, 16-bit two bytes each), so a
32-bit word holds P consecutive columns. A GPU thread that loads four words at once (one
128-bit load) would then need the inputs x[P·i .. P·i + P - 1] of each word: strided loads,
one per weight. `interleave` repacks each row's codes in chunks of P·W columns (W words):
value j of word i of a chunk holds column j·W + i of the chunk, so value j of the chunk's W
words pairs with the W contiguous inputs x[j·W .. j·W + W - 1], loaded as wide as the codes.
Chunks never straddle a scale group (`chunk_words` keeps P·W a divisor of the group, and of
K), and the prefill GEMM reads the same layout (`edgec.kernels.triton.dequant`), so a prepared
weight holds one copy of its codes. The `.edgec` file keeps the stored layout: this is done
once, when a weight is prepared.
"""

from __future__ import annotations

import numpy as np

WORDS_PER_CHUNK = (16, 8, 4)
"""Chunk widths tried, in words (four words are one 128-bit load): the widest that divides K and the group."""


def chunk_words(k: int, group: int | None, bits: int) -> int | None:
    """Words per chunk for `bits`-bit codes with K inputs and scale groups of `group` values along a row (None: one
    scale per row, or none), or None when no chunk of four words or more fits (the byte-layout GEMV then runs)."""
    per_word = 32 // bits
    for words in WORDS_PER_CHUNK:
        chunk = per_word * words
        if k % chunk == 0 and (group is None or group % chunk == 0):
            return words
    return None


def interleave(q: np.ndarray, k: int, bits: int, words: int) -> np.ndarray:
    """Stored codes (N, K·bits/8) uint8, little-endian along the row, as (N, K·bits/32) uint32 words in the
    chunked layout of the module docstring."""
    n, per_word = q.shape[0], 32 // bits
    if bits == 4:
        codes = np.empty((n, k), dtype=np.uint32)
        codes[:, 0::2] = q & 15
        codes[:, 1::2] = q >> 4
    else:
        codes = np.ascontiguousarray(q).view(np.uint8 if bits == 8 else np.uint16).reshape(n, k)
    by_chunk = codes.reshape(n, k // (per_word * words), per_word, words)  # [row, chunk, value j, word i]
    if bits != 4:  # whole bytes: the transposed values, laid out little-endian, are the words
        return np.ascontiguousarray(by_chunk.transpose(0, 1, 3, 2)).view(np.uint32).reshape(n, k // per_word)
    packed = np.zeros((n, k // (per_word * words), words), dtype=np.uint32)
    for j in range(per_word):
        packed |= by_chunk[:, :, j, :] << np.uint32(4 * j)
    return packed.reshape(n, k // per_word)
