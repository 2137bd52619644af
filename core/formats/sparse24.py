"""2:4 semi-structured sparsity, optionally with its kept values quantized: '2:4', '2:4+int4:g128'.

In every group of four consecutive input features of a row, two weights are
kept and two are zero (the pattern NVIDIA's sparse tensor cores execute).
Round-to-nearest keeps the two of largest magnitude.

Stored buffers for a weight (N, K), K divisible by 4, inner format F:

* ``meta``: uint8 (N, ceil(K/8)): per group of four, one 4-bit nibble
  ``i0 | i1 << 2`` with the kept positions i0 < i1 in 0..3, low nibble first;
* ``values.<b>``: every buffer b of F for the kept values as a dense (N, K/2)
  matrix, in their original order (F = fp16 for plain '2:4'). Group sizes of F
  count kept values, so 'g128' spans 256 original input features.
"""

from __future__ import annotations

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats.base import Buffer, Encoded, Format, Packed, parse_format
from edgec.core.formats.bitpack import pack_bits, unpack_bits
from edgec.core.formats.dense import Float16
from edgec.core.formats.fp8 import FP8
from edgec.core.formats.int8 import Int8
from edgec.core.formats.int_group import Int4
from edgec.core.formats.nf4 import NF4

_PREFIX = "values."


class Sparse24(Format, name="2:4"):
    """2:4 sparsity with the kept values stored in an inner (dense) format."""

    def __init__(self, inner: Format | None = None) -> None:
        self.inner = inner if inner is not None else Float16()
        if self.inner.is_sparse:
            raise FormatError("2:4 cannot be nested")

    @classmethod
    def from_options(cls, options: str) -> Format:
        if not options:
            return cls()
        if not options.startswith("+") or len(options) == 1:
            raise FormatError("2:4 takes an inner format after '+', e.g. 2:4+int4:g128")
        inner = parse_format(options[1:])
        if inner.is_sparse:
            raise FormatError("2:4 cannot be nested")
        return cls(inner)

    @classmethod
    def grammar(cls) -> str:
        return "2:4[+<any format above>]"

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls(), cls(Int4(32)), cls(Int4(32, asym=True)), cls(Int8()), cls(NF4(32)), cls(FP8())]

    def __str__(self) -> str:
        return "2:4" if isinstance(self.inner, Float16) else f"2:4+{self.inner}"

    @property
    def is_sparse(self) -> bool:
        return True

    def check_shape(self, shape: tuple[int, ...]) -> None:
        super().check_shape(shape)
        if shape[1] % 4:
            raise FormatError(f"format {self}: the input dimension must be divisible by 4, got shape {tuple(shape)}")

    def buffers(self, shape: tuple[int, int]) -> list[Buffer]:
        self.check_shape(shape)
        n, k = shape
        inner = [Buffer(_PREFIX + b.name, b.dtype, b.shape) for b in self.inner.buffers((n, k // 2))]
        return [Buffer("meta", "uint8", (n, (k + 7) // 8)), *inner]

    # ---- codecs ------------------------------------------------------------------------------
    @staticmethod
    def select(w: np.ndarray) -> np.ndarray:
        """Kept positions (N, K/4, 2), ascending, of the two largest magnitudes per group of four."""
        groups = np.abs(w).reshape(w.shape[0], -1, 4)
        return np.sort(np.argsort(-groups, axis=2, kind="stable")[:, :, :2], axis=2).astype(np.uint8)

    def encode(self, w: np.ndarray) -> Encoded:
        w = self.prepare(w)
        return self.encode_kept(w, self.select(w))

    def encode_kept(self, w: np.ndarray, idx: np.ndarray) -> Encoded:
        """Encode keeping the given positions (N, K/4, 2), ascending, e.g. chosen by Wanda or SparseGPT."""
        n, k = w.shape
        kept = np.take_along_axis(w.reshape(n, -1, 4), idx.astype(np.int64), axis=2).reshape(n, k // 2)
        return {"indices": idx, **{_PREFIX + key: v for key, v in self.inner.encode(kept).items()}}

    def decode(self, enc: Encoded, shape: tuple[int, int]) -> np.ndarray:
        n, k = shape
        kept = self.inner.decode(self._inner_part(enc), (n, k // 2))
        out = np.zeros((n, k // 4, 4), dtype=np.float32)
        np.put_along_axis(out, enc["indices"].astype(np.int64), kept.reshape(n, k // 4, 2), axis=2)
        return out.reshape(n, k)

    def error_bound(self, w: np.ndarray) -> np.ndarray:
        w = self.prepare(w)
        n, k = w.shape
        idx = self.select(w).astype(np.int64)
        groups = w.reshape(n, -1, 4)
        kept = np.take_along_axis(groups, idx, axis=2).reshape(n, k // 2)
        bound = np.repeat(np.sort(np.abs(groups), axis=2)[:, :, 1:2], 4, axis=2)  # pruned: at most the 2nd smallest
        np.put_along_axis(bound, idx, self.inner.error_bound(kept).reshape(n, k // 4, 2), axis=2)
        return bound.reshape(n, k)

    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        n, k = shape
        idx = enc["indices"]
        nibbles = (idx[:, :, 0] | (idx[:, :, 1] << 2)).astype(np.uint8)
        inner = self.inner.pack(self._inner_part(enc), (n, k // 2))
        return {"meta": pack_bits(nibbles, 4), **{_PREFIX + key: v for key, v in inner.items()}}

    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        n, k = shape
        nibbles = unpack_bits(packed["meta"], k // 4, 4)
        idx = np.stack([nibbles & 3, nibbles >> 2], axis=2).astype(np.uint8)
        if (idx[:, :, 0] >= idx[:, :, 1]).any():
            raise FormatError(f"format {self}: corrupt metadata, a group's kept positions are not two ascending indices")
        inner = self.inner.unpack(self._inner_part(packed), (n, k // 2))
        return {"indices": idx, **{_PREFIX + key: v for key, v in inner.items()}}

    @staticmethod
    def _inner_part(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key[len(_PREFIX):]: v for key, v in arrays.items() if key.startswith(_PREFIX)}
