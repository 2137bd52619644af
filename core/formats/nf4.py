"""nf4: 4-bit NormalFloat (QLoRA), one absmax scale per group of G inputs.

Stored buffers for a weight (N, K) with group size G:

* ``qdata``: uint8 (N, ceil(K/2)), code-book indices, low nibble first;
* ``scale``: float16 (N, ceil(K/G)), the group's absolute maximum.

Dequantization: ``w = NF4_CODEBOOK[index] * scale``.
"""

from __future__ import annotations

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
from edgec.core.formats.int_group import GROUP_SIZES

# The 16 NormalFloat-4 values of Dettmers et al., "QLoRA" (2023), appendix E.
NF4_CODEBOOK = np.array(
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230731010437, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
    ],
    dtype=np.float32,
)
_MIDPOINTS = (NF4_CODEBOOK[1:] + NF4_CODEBOOK[:-1]) / 2
_HALF_MAX_GAP = float(np.diff(NF4_CODEBOOK).max() / 2)


class NF4(GroupQuantizedFormat, name="nf4"):
    """NormalFloat-4 with block absmax scaling."""

    def __init__(self, group: int) -> None:
        self.group = group

    @classmethod
    def from_options(cls, options: str) -> Format:
        parts = parse_options(options, cls.family)
        if len(parts) != 1 or not parts[0].startswith("g") or not parts[0][1:].isdigit():
            raise FormatError("nf4 needs exactly a group size, e.g. nf4:g64")
        group = int(parts[0][1:])
        if group not in GROUP_SIZES:
            raise FormatError(f"group size {group} is not one of {GROUP_SIZES}")
        return cls(group)

    @classmethod
    def grammar(cls) -> str:
        return f"nf4:g{{{','.join(map(str, GROUP_SIZES))}}}"

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls(32), cls(64)]

    def __str__(self) -> str:
        return f"nf4:g{self.group}"

    def buffers(self, shape: tuple[int, int]) -> list[Buffer]:
        self.check_shape(shape)
        n, k = shape
        return [Buffer("qdata", "uint8", (n, packed_row_bytes(k, 4))), Buffer("scale", "float16", (n, n_groups(k, self.group)))]

    param_dtypes = {"scale": "float16"}

    def group_size(self, k: int) -> int:
        return self.group

    def fit(self, w: np.ndarray) -> dict[str, np.ndarray]:
        return {"scale": to_fp16(np.abs(w).max(axis=-1), "scale", self).astype(np.float32)}

    def round(self, w: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        return np.searchsorted(_MIDPOINTS, safe_div(w, params["scale"])).astype(np.uint8)

    def scale(self, codes: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        return NF4_CODEBOOK[codes] * params["scale"]

    def error_bound(self, w: np.ndarray) -> np.ndarray:
        w = self.prepare(w)
        absmax = np.abs(to_groups(w, self.group)).max(axis=2)
        s16 = absmax.astype(np.float16).astype(np.float32)
        bound = s16 * _HALF_MAX_GAP + np.abs(absmax - s16)
        return per_element(bound, w.shape[1], self.group) * (1 + 1e-5) + 1e-12

    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        return {"qdata": pack_bits(enc["codes"], 4), "scale": enc["scale"].astype(np.float16)}

    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        return {"codes": unpack_bits(packed["qdata"], shape[1], 4), "scale": packed["scale"].copy()}
