"""fp8: 8-bit floats (OCP e4m3fn) with one float32 scale per output channel.

Stored buffers for a weight (N, K):

* ``qdata``: uint8 (N, K), e4m3fn bit patterns (1 sign, 4 exponent bits with bias 7,
  3 mantissa bits; no infinities; 0x7F and 0xFF are NaN; largest finite 448);
* ``scale``: float32 (N, 1), row absmax / 448.

Dequantization: ``w = e4m3fn_to_float32(qdata) * scale``. The scale is float32,
as in ModelOpt's and vLLM's FP8 checkpoints, because fp16 would lose the scale of
rows with very small weights.
"""

from __future__ import annotations

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats.base import Buffer, Encoded, Format, GroupQuantizedFormat, Packed, parse_options, safe_div

E4M3_MAX = 448.0
_MIN_NORMAL_EXP = -6


def _decode_table() -> np.ndarray:
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exp = (codes >> 3) & 0xF
    man = codes & 0x7
    mag = np.where(exp == 0, man * 2.0**-9, (1 + man / 8) * 2.0 ** (exp - 7))
    mag = np.where((exp == 15) & (man == 7), np.nan, mag)
    return (sign * mag).astype(np.float32)


E4M3_TABLE = _decode_table()


def e4m3fn_to_float32(codes: np.ndarray) -> np.ndarray:
    """Decode e4m3fn bit patterns (uint8) to float32."""
    return E4M3_TABLE[codes]


ENCODE_CHUNK = 1 << 20  # elements encoded at once: the float64 and int64 temporaries take ~80 bytes each


def float32_to_e4m3fn(x: np.ndarray) -> np.ndarray:
    """Encode float32 to e4m3fn bit patterns, round to nearest even, saturating at ±448.

    NaN becomes 0x7F; infinities saturate, as torch's float8_e4m3fn conversion does.
    Encoded a chunk at a time, so that a 1B model's 262M-weight head does not need its float64
    and int64 temporaries whole (about 80 bytes per element, some 20 GB).
    """
    x = np.asarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.uint8)
    flat, flat_out = x.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, ENCODE_CHUNK):
        flat_out[start : start + ENCODE_CHUNK] = _encode_chunk(flat[start : start + ENCODE_CHUNK])
    return out


def _encode_chunk(x: np.ndarray) -> np.ndarray:
    a = np.minimum(np.nan_to_num(np.abs(x).astype(np.float64), nan=0.0), E4M3_MAX)
    _, ex = np.frexp(np.maximum(a, 2.0**_MIN_NORMAL_EXP))
    step = np.ldexp(1.0, ex - 1 - 3)  # spacing of e4m3 values in a's binade
    r = np.rint(a / step) * step  # exact: a/step only shifts the exponent
    frac, ex_r = np.frexp(np.maximum(r, 2.0**_MIN_NORMAL_EXP))
    normal = ((ex_r - 1 + 7) << 3) | np.rint((frac * 2 - 1) * 8).astype(np.int64)
    code = np.where(r < 2.0**_MIN_NORMAL_EXP, np.rint(r * 2.0**9).astype(np.int64), normal)
    code = code | np.where(np.signbit(x), 0x80, 0)
    code = np.where(np.isnan(x), 0x7F, code)
    return code.astype(np.uint8)


class FP8(GroupQuantizedFormat, name="fp8"):
    """e4m3fn weights with per-output-channel float32 scales."""

    @classmethod
    def from_options(cls, options: str) -> Format:
        if parse_options(options, cls.family):
            raise FormatError("fp8 takes no options (it is e4m3fn with a per-channel scale)")
        return cls()

    @classmethod
    def grammar(cls) -> str:
        return "fp8"

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls()]

    def __str__(self) -> str:
        return "fp8"

    def buffers(self, shape: tuple[int, int]) -> list[Buffer]:
        self.check_shape(shape)
        return [Buffer("qdata", "uint8", tuple(shape)), Buffer("scale", "float32", (shape[0], 1))]

    param_dtypes = {"scale": "float32"}

    def group_size(self, k: int) -> int:
        return k

    def fit(self, w: np.ndarray) -> dict[str, np.ndarray]:
        return {"scale": (np.abs(w).max(axis=-1) / E4M3_MAX).astype(np.float32)}

    def round(self, w: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        return float32_to_e4m3fn(safe_div(w, params["scale"]))

    def scale(self, codes: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        return e4m3fn_to_float32(codes) * params["scale"]

    def error_bound(self, w: np.ndarray) -> np.ndarray:
        w = self.prepare(w)
        row_scale = np.abs(w).max(axis=1, keepdims=True) / E4M3_MAX
        return (np.abs(w) * 2.0**-4 + row_scale * 2.0**-10) * (1 + 1e-5) + 1e-30

    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        return {"qdata": enc["codes"].astype(np.uint8), "scale": enc["scale"].astype(np.float32)}

    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        return {"codes": packed["qdata"].copy(), "scale": packed["scale"].copy()}
