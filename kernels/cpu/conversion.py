"""`prepare`: a stored weight's buffers, converted once for the CPU kernels.

Like gpt-fast's convert_for_runtime, but never to a float copy: codes stay as stored
(zero-copy views where the stored layout already suits the kernels, as it does for
every format), float16 scales and minima are widened to float32 (a few percent of
the weight), and fp8 rows holding a NaN code get a NaN scale so that every kernel
propagates it as the reference does. Scales or minima that are not finite (which no
quantizer writes) are refused.

One converter per format family, looked up by `Format.family`; a family without a
converter is refused by name (and the test suite fails the moment one is registered).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats import NF4, Float16, Format, Sparse24
from edgec.core.formats.int_group import GroupwiseInt
from edgec.core.storage_kinds import STORAGE_KINDS
from edgec.kernels.cpu.extension import extension

Packed = dict[str, np.ndarray]


@dataclass(frozen=True)
class Parts:
    """What one values matrix hands the kernels (see kernels/cpu/weight.h)."""

    kind: str                      # a key of edgec.core.storage_kinds.STORAGE_KINDS
    group: int                     # values per scale group (ignored by per-row kinds)
    arrays: dict[str, np.ndarray]  # q, and scale / minv where the kind has them


@dataclass(frozen=True, eq=False)
class PreparedWeight:
    """A weight ready for `linear`: the format, shape (N, K), the kernels' handle and the arrays it reads."""

    fmt: Format
    shape: tuple[int, int]
    handle: object = field(repr=False)
    arrays: dict[str, np.ndarray] = field(repr=False)

    @property
    def nbytes(self) -> int:
        """Bytes the prepared weight keeps in memory (stored buffers it views included)."""
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def int8_activations(self) -> bool:
        """Whether `linear(..., accuracy="int8")` takes the integer path for this weight."""
        return not self.fmt.is_sparse and self.fmt.family in ("int4", "int8")


def _widen(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _finite(fmt: Format, name: str, a: np.ndarray, limit: float = np.inf) -> np.ndarray:
    """Refuse scales or minima that are not finite (or reach `limit`): no quantizer writes them."""
    if not (np.abs(a) < limit).all():
        raise FormatError(f"format {fmt}: buffer {name!r} holds values that are not finite"
                          + ("" if limit == np.inf else f" or not below {limit:g}"))
    return a


def _int_group(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    assert isinstance(fmt, GroupwiseInt)
    kind = f"int{fmt.bits}" + ("_asym" if fmt.asym else "")
    arrays = {"q": packed["qdata"], "scale": _finite(fmt, "scale", _widen(packed["scale"]))}
    if fmt.asym:
        arrays["minv"] = _finite(fmt, "min", _widen(packed["min"]))
    return Parts(kind, fmt.group_size(shape[1]), arrays)


def _nf4(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    assert isinstance(fmt, NF4)
    return Parts("nf4", fmt.group, {"q": packed["qdata"], "scale": _finite(fmt, "scale", _widen(packed["scale"]))})


def _fp8(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    q = packed["qdata"]
    # the kernels fold 2^8 into the scale, so it must stay below 2^120 (quantized scales are < 2^119.2)
    scale = np.array(_finite(fmt, "scale", packed["scale"], 2.0**120), dtype=np.float32)  # (N, 1), a copy:
    scale[((q & 0x7F) == 0x7F).any(axis=1)] = np.nan  # rows holding a NaN code get a NaN scale
    return Parts("fp8", shape[1], {"q": q, "scale": scale})


def _dense(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    return Parts("f16" if isinstance(fmt, Float16) else "bf16", shape[1], {"q": packed["values"]})


def _sparse24(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    assert isinstance(fmt, Sparse24)
    n, k = shape
    meta = packed["meta"]
    nibbles = np.stack([meta & 15, meta >> 4], axis=2).reshape(n, -1)[:, : k // 4]
    if ((nibbles & 3) >= (nibbles >> 2)).any():
        raise FormatError(f"format {fmt}: corrupt metadata, a group's kept positions are not two ascending indices")
    inner = {name[len("values."):]: a for name, a in packed.items() if name.startswith("values.")}
    parts = _convert(fmt.inner, inner, (n, k // 2))
    return Parts(parts.kind, parts.group, {**parts.arrays, "meta": meta})


# format family -> converter of its stored buffers
CONVERTERS: dict[str, Callable[[Format, Packed, tuple[int, int]], Parts]] = {
    "int2": _int_group, "int3": _int_group, "int4": _int_group, "int8": _int_group,
    "nf4": _nf4,
    "fp8": _fp8,
    "fp16": _dense, "bf16": _dense,
    "2:4": _sparse24,
}


def _checked(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Packed:
    """The buffers `fmt.buffers(shape)` declares, checked and C-contiguous (copied only if not)."""
    out = {}
    for b in fmt.buffers(shape):
        if b.name not in packed:
            raise FormatError(f"format {fmt}: buffer {b.name!r} is missing")
        a = np.asarray(packed[b.name])
        if a.dtype != np.dtype(b.dtype) or a.shape != b.shape:
            raise FormatError(f"format {fmt}: buffer {b.name!r} must be {b.dtype} {b.shape}, got {a.dtype} {a.shape}")
        out[b.name] = np.ascontiguousarray(a)
    return out


def _convert(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    converter = CONVERTERS.get(fmt.family)
    if converter is None:
        raise FormatError(f"format {fmt}: the CPU kernels have no converter for the {fmt.family!r} family")
    return converter(fmt, _checked(fmt, packed, shape), shape)


def storage_parts(fmt: Format, packed: Packed, shape: tuple[int, int]) -> Parts:
    """A weight's stored buffers as a storage kind, group and arrays (see kernels/cpu/weight.h): what
    every compiled kernel family (these, and the Triton ones) reads. Raises FormatError naming the culprit."""
    if len(shape) != 2:
        raise FormatError(f"format {fmt}: linear weights must be 2-D (N, K), got shape {tuple(shape)}")
    shape = (int(shape[0]), int(shape[1]))
    fmt.check_shape(shape)
    return _convert(fmt, packed, shape)


def prepare(fmt: Format, packed: Packed, shape: tuple[int, int]) -> PreparedWeight:
    """Convert a weight's stored buffers (as `fmt.buffers(shape)` lists them) for `linear`.

    Buffers may be read-only views of a mapped file; they are kept, not copied.
    Raises FormatError for buffers that do not match the format, RuntimeError if the
    compiled kernels are unavailable.
    """
    cpu = extension()
    parts = storage_parts(fmt, packed, shape)
    shape = (int(shape[0]), int(shape[1]))
    a = parts.arrays
    handle = cpu.Weight(STORAGE_KINDS[parts.kind].code, shape[0], shape[1], parts.group,
                        a["q"], a.get("scale"), a.get("minv"), a.get("meta"))
    return PreparedWeight(fmt, shape, handle, a)
