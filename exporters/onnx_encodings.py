"""From edgec's stored buffers to what an ONNX Runtime op stores, exactly.

Each storage format converts its packed buffers (see `edgec.core.formats`) to one
*encoding*: the operands of one ONNX Runtime op family, with values that dequantize
to the very same weights (the tests check this bit for bit through ORT):

| encoding     | ONNX Runtime op                         | from formats                         |
|--------------|-----------------------------------------|--------------------------------------|
| `BlockInt`   | com.microsoft::MatMulNBits              | int4/int2 :gG [:asym], int8           |
| `BlockNF4`   | com.microsoft::MatMulBnb4 (quant_type 1) | nf4:gG                               |
| `ChannelFP8` | DequantizeLinear(float8e4m3fn) + MatMul | fp8                                  |
| `Dense16`    | Cast(float16/bfloat16) + MatMul         | fp16, bf16                           |
| `Dense32`    | MatMul (Gemm for a tied head)           | layers kept in float32               |

2:4 formats convert their kept values with the inner format, then `scatter_24` lays
them out densely with exact zeros in the pruned places (ONNX Runtime has no 2:4 op).
What cannot be expressed exactly raises EdgecError naming the layer and the format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from edgec.core.errors import EdgecError
from edgec.core.formats import (
    FP8,
    NF4,
    BFloat16,
    Float16,
    Format,
    Int2,
    Int3,
    Int4,
    Int8,
    Sparse24,
)
from edgec.core.formats.bitpack import unpack_bits

MATMUL_NBITS_BITS = (2, 4, 8)  # what ORT 1.31's CPU MatMulNBits kernel accepts (it refuses 3)
MATMUL_NBITS_BLOCKS = (16, 32, 64, 128, 256)  # likewise for block_size
NF4_ZERO = 7  # index of 0.0 in the NF4 code book


def refuse(layer: str, fmt: Format | str, why: str) -> EdgecError:
    return EdgecError(f"layer {layer!r}: format {fmt} cannot be exported to ONNX exactly ({why})")


@dataclass
class BlockInt:
    """MatMulNBits operands: w = (code - zero) * scale per block of `block` inputs; zero None = 2**(bits-1)."""

    codes: np.ndarray  # uint8 (N, K), as stored (symmetric codes already offset by 2**(bits-1))
    scales: np.ndarray  # float32 (N, ceil(K/block))
    zeros: np.ndarray | None  # float32 (N, ceil(K/block)) or None
    bits: int
    block: int
    act_format: str | None = None  # "int8" when the layer may quantize its input statically (W8A8)

    def scatter_24(self, idx: np.ndarray, layer: str, fmt: Format) -> BlockInt:
        if self.zeros is not None:
            raise refuse(layer, fmt, "pruned zeros are not representable as code * scale + min")
        return replace(self, codes=scatter_24(self.codes, idx, 2 ** (self.bits - 1)), block=2 * self.block)


@dataclass
class BlockNF4:
    """MatMulBnb4 operands: w = NF4[code] * absmax per block of `block` inputs."""

    codes: np.ndarray  # uint8 (N, K) code-book indices
    absmax: np.ndarray  # float32 (N, K/block)
    block: int

    def scatter_24(self, idx: np.ndarray, layer: str, fmt: Format) -> BlockNF4:
        return replace(self, codes=scatter_24(self.codes, idx, NF4_ZERO), block=2 * self.block)


@dataclass
class ChannelFP8:
    """float8e4m3fn weights and one float32 scale per output channel."""

    codes: np.ndarray  # uint8 (N, K) e4m3fn bit patterns
    scale: np.ndarray  # float32 (N,)
    act_format: str | None = "fp8"

    def scatter_24(self, idx: np.ndarray, layer: str, fmt: Format) -> ChannelFP8:
        return replace(self, codes=scatter_24(self.codes, idx, 0))


@dataclass
class Dense16:
    """16-bit float weights: float16 values, or bfloat16 bit patterns in uint16."""

    values: np.ndarray  # float16 or uint16 (N, K)
    bf16: bool

    def scatter_24(self, idx: np.ndarray, layer: str, fmt: Format) -> Dense16:
        return replace(self, values=scatter_24(self.values, idx, 0))


@dataclass
class Dense32:
    """Float32 weights of a layer that is not compressed."""

    weight: np.ndarray  # float32 (N, K)


Encoding = BlockInt | BlockNF4 | ChannelFP8 | Dense16 | Dense32


def scatter_24(kept: np.ndarray, idx: np.ndarray, zero: int) -> np.ndarray:
    """Kept values (N, K/2) at positions idx (N, K/4, 2) of each group of four -> dense (N, K), `zero` elsewhere."""
    n, half = kept.shape
    dense = np.full((n, half // 2, 4), zero, dtype=kept.dtype)
    np.put_along_axis(dense, idx.astype(np.int64), kept.reshape(n, half // 2, 2), axis=2)
    return dense.reshape(n, 2 * half)


# ---- one converter per format family ------------------------------------------------------------------
Converter = Callable[[Format, dict[str, np.ndarray], tuple[int, int], str], Encoding]


def _int_group(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> BlockInt:
    k = shape[1]
    if fmt.bits not in MATMUL_NBITS_BITS:
        raise refuse(layer, fmt, f"ONNX Runtime 1.31's CPU MatMulNBits does not run {fmt.bits}-bit weights, only 2, 4 and 8")
    codes = unpack_bits(packed["qdata"], k, fmt.bits)
    scales = packed["scale"].astype(np.float32)
    zeros = None
    if fmt.asym:  # w = code * scale + min = (code - zero) * scale with zero = -min / scale
        lo = packed["min"].astype(np.float32)
        if np.any((scales == 0) & (lo != 0)):
            raise refuse(layer, fmt, "a constant nonzero group (scale 0) has no zero point")
        zeros = np.divide(-lo, scales, out=np.zeros_like(lo), where=scales != 0)
    return BlockInt(codes, scales, zeros, fmt.bits, fmt.group)


def _int8(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> BlockInt:
    codes = (packed["qdata"].astype(np.int16) + 128).astype(np.uint8)  # offset binary: zero point 128
    return BlockInt(codes, packed["scale"].astype(np.float32), None, 8, shape[1], act_format="int8")


def _nf4(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> BlockNF4:
    return BlockNF4(unpack_bits(packed["qdata"], shape[1], 4), packed["scale"].astype(np.float32), fmt.group)


def _fp8(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> ChannelFP8:
    return ChannelFP8(packed["qdata"], packed["scale"].astype(np.float32).reshape(-1))


def _dense16(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> Dense16:
    return Dense16(packed["values"], bf16=isinstance(fmt, BFloat16))


def _sparse24(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> Encoding:
    n, k = shape
    decoded = fmt.unpack(packed, shape)
    inner_packed = {key[len("values."):]: v for key, v in packed.items() if key.startswith("values.")}
    inner = convert(fmt.inner, inner_packed, (n, k // 2), layer)
    return inner.scatter_24(decoded["indices"], layer, fmt)


CONVERTERS: dict[type[Format], Converter] = {
    Int4: _int_group, Int3: _int_group, Int2: _int_group, Int8: _int8, NF4: _nf4, FP8: _fp8,
    Float16: _dense16, BFloat16: _dense16, Sparse24: _sparse24,
}


def convert(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], layer: str) -> Encoding:
    """The exact ONNX Runtime encoding of one layer's stored buffers; refuses what has none."""
    converter = CONVERTERS.get(type(fmt))
    if converter is None:
        raise refuse(layer, fmt, "no ONNX mapping is known for this format")
    return converter(fmt, packed, shape, layer)
