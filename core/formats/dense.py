"""16-bit float formats, stored dense: fp16 and bf16.

Stored buffer for a weight (N, K):

* ``values``: float16 (N, K) for fp16; uint16 (N, K) holding the bfloat16 bit
  pattern for bf16 (numpy has no bfloat16 dtype), rounded to nearest even.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats.base import Buffer, Encoded, Format, Packed, parse_options, to_fp16


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


class DenseFloat(Format):
    """A format storing each weight as one 16-bit float."""

    storage_dtype: ClassVar[str]
    relative_step: ClassVar[float]  # half the spacing of adjacent values, relative to the value

    @classmethod
    def from_options(cls, options: str) -> Format:
        if parse_options(options, cls.family):
            raise FormatError(f"{cls.family} takes no options")
        return cls()

    @classmethod
    def grammar(cls) -> str:
        return cls.family

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls()]

    def __str__(self) -> str:
        return self.family

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Dense values have any shape of rank 1 to 8 (norm weights and biases are 1-D)."""
        if not 1 <= len(shape) <= 8 or min(shape) < 1:
            raise FormatError(f"format {self}: shape must have 1 to 8 dimensions, each >= 1, got {tuple(shape)}")

    def buffers(self, shape: tuple[int, ...]) -> list[Buffer]:
        self.check_shape(shape)
        return [Buffer("values", self.storage_dtype, tuple(shape))]

    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        return {"values": enc["values"].astype(self.storage_dtype)}

    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        return {"values": packed["values"].copy()}

    def error_bound(self, w: np.ndarray) -> np.ndarray:
        return np.abs(self.prepare(w)) * self.relative_step + 2.0**-25


class Float16(DenseFloat, name="fp16"):
    """IEEE half precision."""

    storage_dtype = "float16"
    relative_step = 2.0**-11

    def encode(self, w: np.ndarray) -> Encoded:
        return {"values": to_fp16(self.prepare(w), "weight", self)}

    def decode(self, enc: Encoded, shape: tuple[int, int]) -> np.ndarray:
        return enc["values"].astype(np.float32)


class BFloat16(DenseFloat, name="bf16"):
    """bfloat16: float32's exponent range with 8 bits of significand."""

    storage_dtype = "uint16"
    relative_step = 2.0**-8

    def encode(self, w: np.ndarray) -> Encoded:
        return {"values": float32_to_bf16_bits(self.prepare(w))}

    def decode(self, enc: Encoded, shape: tuple[int, int]) -> np.ndarray:
        return bf16_bits_to_float32(enc["values"])
