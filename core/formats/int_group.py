"""Integer formats with one scale per group of input features: int4, int3, int2.

Stored buffers for a weight (N, K) with b bits and group size G:

* ``qdata``: uint8 (N, ceil(K*b/8)), codes as a little-endian bit stream per row
  (for int4: low nibble first). Symmetric codes are stored offset by 2**(b-1).
* ``scale``: float16 (N, ceil(K/G)).
* ``min``: float16 (N, ceil(K/G)), asymmetric (``:asym``) only.

Dequantization, per group:

* symmetric: ``w = (code - 2**(b-1)) * scale``, with scale = absmax / (2**(b-1) - 1/2),
  so all 2**b levels are used (as GPTQ's symmetric quantizer does);
* asymmetric: ``w = code * scale + min``, with min the group minimum and scale =
  (max - min) / (2**b - 1): a float minimum, as llama.cpp's Q4_1 stores it, not an
  integer zero point.

A partial last group (K not divisible by G) is stored like a full one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats.base import (
    Buffer,
    Encoded,
    Format,
    GroupQuantizedFormat,
    Packed,
    parse_options,
    safe_div,
    to_fp16,
)
from edgec.core.formats.bitpack import pack_bits, packed_row_bytes, unpack_bits
from edgec.core.formats.grouping import n_groups, per_element, to_groups

GROUP_SIZES = (32, 64, 128, 256)


class GroupwiseInt(GroupQuantizedFormat):
    """Shared implementation of integer formats; `group=None` means one group per row."""

    bits: ClassVar[int]

    def __init__(self, group: int | None, asym: bool = False) -> None:
        self.group = group
        self.asym = asym

    # ---- identity ---------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: str) -> Format:
        parts = parse_options(options, cls.family)
        if not parts or not parts[0].startswith("g"):
            raise FormatError(f"{cls.family} needs a group size, e.g. {cls.family}:g128")
        try:
            group = int(parts[0][1:])
        except ValueError:
            raise FormatError(f"group size {parts[0]!r} is not an integer") from None
        if group not in GROUP_SIZES:
            raise FormatError(f"group size {group} is not one of {GROUP_SIZES}")
        extra = parts[1:]
        if extra not in ([], ["asym"]):
            raise FormatError(f"unknown option {':'.join(extra)!r} (only 'asym' is allowed)")
        return cls(group=group, asym=bool(extra))

    @classmethod
    def grammar(cls) -> str:
        return f"{cls.family}:g{{{','.join(map(str, GROUP_SIZES))}}}[:asym]"

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls(group=g, asym=a) for g in (32, 128) for a in (False, True)]

    def __str__(self) -> str:
        return f"{self.family}:g{self.group}" + (":asym" if self.asym else "")

    # ---- layout -----------------------------------------------------------------------
    @property
    def _qdata_dtype(self) -> str:
        return "int8" if self.bits == 8 and not self.asym else "uint8"

    def buffers(self, shape: tuple[int, int]) -> list[Buffer]:
        self.check_shape(shape)
        n, k = shape
        ng = n_groups(k, self.group_size(k))
        out = [Buffer("qdata", self._qdata_dtype, (n, packed_row_bytes(k, self.bits))), Buffer("scale", "float16", (n, ng))]
        if self.asym:
            out.append(Buffer("min", "float16", (n, ng)))
        return out

    # ---- quantization -------------------------------------------------------------------
    def group_size(self, k: int) -> int:
        return self.group or k

    @property
    def param_dtypes(self) -> dict[str, str]:  # type: ignore[override]
        return {"scale": "float16", "min": "float16"} if self.asym else {"scale": "float16"}

    def _ideal_params(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Scale and minimum of groups along the last axis, before rounding to float16."""
        if self.asym:
            lo = g.min(axis=-1)
            return (g.max(axis=-1) - to_fp16(lo, "group minimum", self).astype(np.float32)) / (2**self.bits - 1), lo
        return np.abs(g).max(axis=-1) / (2 ** (self.bits - 1) - 0.5), None

    def fit(self, w: np.ndarray) -> dict[str, np.ndarray]:
        scale, lo = self._ideal_params(w)
        params = {"scale": to_fp16(scale, "scale", self).astype(np.float32)}
        if self.asym:
            params["min"] = to_fp16(lo, "group minimum", self).astype(np.float32)
        return params

    def round(self, w: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        if self.asym:
            t = safe_div(w - params["min"], params["scale"])
            return np.clip(np.rint(t), 0, 2**self.bits - 1).astype(np.uint8)
        half = 2 ** (self.bits - 1)
        return np.clip(np.rint(safe_div(w, params["scale"])), -half, half - 1).astype(np.int8)

    def scale(self, codes: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        values = codes.astype(np.float32) * params["scale"]
        return values + params["min"] if self.asym else values

    def error_bound(self, w: np.ndarray) -> np.ndarray:
        w = self.prepare(w)
        k = w.shape[1]
        gs = self.group_size(k)
        scale, lo = self._ideal_params(to_groups(w, gs))
        s16 = scale.astype(np.float16).astype(np.float32)
        levels = 2**self.bits - 1 if self.asym else 2 ** (self.bits - 1)
        bound = s16 / 2 + levels * np.abs(scale - s16)
        if self.asym:
            bound = bound + np.abs(lo - lo.astype(np.float16).astype(np.float32))
        return per_element(bound, k, gs) * (1 + 1e-5) + 1e-12

    # ---- storage -------------------------------------------------------------------------
    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        codes = enc["codes"]
        if self.bits == 8:
            qdata = codes.astype(self._qdata_dtype)
        else:
            offset = 0 if self.asym else 2 ** (self.bits - 1)
            qdata = pack_bits((codes.astype(np.int16) + offset).astype(np.uint8), self.bits)
        out = {"qdata": qdata, "scale": enc["scale"].astype(np.float16)}
        if self.asym:
            out["min"] = enc["min"].astype(np.float16)
        return out

    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        k = shape[1]
        if self.bits == 8:
            codes = packed["qdata"].copy()
        elif self.asym:
            codes = unpack_bits(packed["qdata"], k, self.bits)
        else:
            codes = (unpack_bits(packed["qdata"], k, self.bits).astype(np.int16) - 2 ** (self.bits - 1)).astype(np.int8)
        out = {"codes": codes, "scale": packed["scale"].copy()}
        if self.asym:
            out["min"] = packed["min"].copy()
        return out


class Int4(GroupwiseInt, name="int4"):
    """4-bit integers, one float16 scale (and minimum, if asym) per group of G inputs."""

    bits = 4


class Int3(GroupwiseInt, name="int3"):
    """3-bit integers, one float16 scale (and minimum, if asym) per group of G inputs."""

    bits = 3


class Int2(GroupwiseInt, name="int2"):
    """2-bit integers, one float16 scale (and minimum, if asym) per group of G inputs."""

    bits = 2
