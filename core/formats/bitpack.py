"""Packing of small unsigned integer codes into little-endian bit streams.

Each row of codes (N, K) with `bits` bits per code is packed independently into
ceil(K * bits / 8) bytes: code j of a row occupies bits [j*bits, (j+1)*bits)
of the row's stream, least significant bit first. For 4-bit codes this is
"low nibble first"; for 3-bit codes, eight codes fill three bytes.
"""

import numpy as np


def packed_row_bytes(k: int, bits: int) -> int:
    """Bytes one row of `k` codes of `bits` bits takes."""
    return (k * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack uint codes (N, K), each < 2**bits, into uint8 (N, ceil(K*bits/8))."""
    if codes.ndim != 2:
        raise ValueError(f"pack_bits expects a 2-D array, got shape {codes.shape}")
    if bits == 8:
        return codes.astype(np.uint8, copy=False)
    n, k = codes.shape
    if bits == 4 and k % 2 == 0:
        c = codes.astype(np.uint8, copy=False)
        return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)
    shifts = np.arange(bits, dtype=np.uint8)
    stream = ((codes.astype(np.uint8)[:, :, None] >> shifts) & 1).reshape(n, k * bits)
    return np.packbits(stream, axis=1, bitorder="little")


def unpack_bits(packed: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Inverse of `pack_bits`: uint8 (N, ceil(K*bits/8)) to uint8 codes (N, K)."""
    if bits == 8:
        return packed.astype(np.uint8, copy=False)[:, :k]
    n = packed.shape[0]
    if bits == 4 and k % 2 == 0:
        out = np.empty((n, k), dtype=np.uint8)
        out[:, 0::2] = packed & 0x0F
        out[:, 1::2] = packed >> 4
        return out
    stream = np.unpackbits(packed, axis=1, count=k * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.uint8)).astype(np.uint8)
    return (stream.reshape(n, k, bits) * weights).sum(axis=2, dtype=np.uint8)
