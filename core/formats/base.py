"""The format contract: one class per storage format, registered by name.

A weight is a float matrix W of shape (N, K): N output features, K input
features, row-major. A format turns W into a few named stored buffers
(`Buffer`), each a numpy array of fixed dtype and shape, and back.

Two representations of a quantized weight exist:

* *encoded*: the logical arrays (codes as one small integer per weight,
  scales, minima, sparsity indices), convenient for algorithms;
* *packed*: the stored buffers exactly as they are written to disk and read by
  kernels, described by `Format.buffers(shape)`.

`encode` is round-to-nearest quantization; `decode` is dequantization; `pack`
and `unpack` convert between the two representations bit-exactly.

Rows are independent in every format: scales, minima and groups lie within a row
and 2:4 patterns run along it, so encoding a band of rows gives exactly those rows
of the whole weight's encoding. Code that meets a large weight (a 128k-token
vocabulary's head) relies on it to round a band at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from math import prod
from typing import ClassVar

import numpy as np

from edgec.core.errors import FormatError
from edgec.core.formats.grouping import per_element, to_groups

Encoded = dict[str, np.ndarray]
Packed = dict[str, np.ndarray]

_REGISTRY: dict[str, type[Format]] = {}

BAND_ELEMENTS = 1 << 22  # weights `fake_quantize` rounds at once: encode's temporaries stay near 100 MB


@dataclass(frozen=True)
class Buffer:
    """One stored component of a packed weight: its name, dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * np.dtype(self.dtype).itemsize


class Format(ABC):
    """A weight storage format. Subclasses register with `name=`.

    Instances are immutable values: two instances with the same canonical
    string are equal.
    """

    family: ClassVar[str]

    def __init_subclass__(cls, name: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:
            return
        if name in _REGISTRY:
            raise TypeError(f"format name {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.family = name
        _REGISTRY[name] = cls

    # ---- identity -------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_options(cls, options: str) -> Format:
        """Build an instance from the text after the family name ('' if none)."""

    @classmethod
    @abstractmethod
    def grammar(cls) -> str:
        """The strings this family accepts, e.g. 'int4:g{32,64,128,256}[:asym]'."""

    @classmethod
    @abstractmethod
    def examples(cls) -> list[Format]:
        """Instances that together exercise every option; the test suite loops over them."""

    @abstractmethod
    def __str__(self) -> str:
        """The canonical format string."""

    def __repr__(self) -> str:
        return f"Format({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Format) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    # ---- storage --------------------------------------------------------------------
    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Refuse shapes this format cannot store; the message names the format."""
        if len(shape) != 2 or min(shape) < 1:
            raise FormatError(f"format {self}: weights must be 2-D (N, K) with N, K >= 1, got shape {tuple(shape)}")

    @abstractmethod
    def buffers(self, shape: tuple[int, int]) -> list[Buffer]:
        """The stored buffers of a weight of this shape, in storage order."""

    def nbytes(self, shape: tuple[int, int]) -> int:
        """Exact stored bytes of a weight of this shape (scales, zeros, metadata included)."""
        return sum(b.nbytes for b in self.buffers(shape))

    def bits_per_weight(self, shape: tuple[int, int]) -> float:
        """Stored bits per weight for this shape, everything included."""
        return 8 * self.nbytes(shape) / prod(shape)

    @property
    def is_sparse(self) -> bool:
        return False

    # ---- codecs ---------------------------------------------------------------------
    @abstractmethod
    def encode(self, w: np.ndarray) -> Encoded:
        """Round-to-nearest quantize a float matrix (N, K) into logical arrays."""

    @abstractmethod
    def decode(self, enc: Encoded, shape: tuple[int, int]) -> np.ndarray:
        """Dequantize logical arrays to float32 (N, K)."""

    @abstractmethod
    def pack(self, enc: Encoded, shape: tuple[int, int]) -> Packed:
        """Logical arrays to the stored buffers of `buffers(shape)`."""

    @abstractmethod
    def unpack(self, packed: Packed, shape: tuple[int, int]) -> Encoded:
        """Stored buffers back to logical arrays, bit-exactly."""

    @abstractmethod
    def error_bound(self, w: np.ndarray) -> np.ndarray:
        """Per-element bound on |decode(encode(w)) - w| that round-to-nearest guarantees."""

    # ---- conveniences -----------------------------------------------------------------
    def quantize(self, w: np.ndarray) -> Packed:
        """Round-to-nearest quantize and pack."""
        w = self.prepare(w)
        return self.pack(self.encode(w), w.shape)

    def dequantize(self, packed: Packed, shape: tuple[int, int]) -> np.ndarray:
        """Unpack and dequantize stored buffers to float32 (N, K)."""
        return self.decode(self.unpack(packed, shape), shape)

    def fake_quantize(self, w: np.ndarray) -> np.ndarray:
        """decode(encode(w)): the float weights the stored model will compute with.

        Computed a band of rows at a time (rows are independent, see the module docstring),
        so a large weight costs its float32 result and one band's temporaries.
        """
        w = self.prepare(w)
        out = np.empty_like(w)
        for rows in row_bands(w):
            out[rows] = self.decode(self.encode(w[rows]), w[rows].shape)
        return out

    def encode_decode(self, w: np.ndarray) -> tuple[Encoded, np.ndarray]:
        """(encode(w), decode(encode(w))), a band of rows at a time as in `fake_quantize`: a large weight costs
        its two results and one band's temporaries (whole, int4 asymmetric encoding takes 4x the weight)."""
        w = self.prepare(w)
        out, enc = np.empty_like(w), {}
        for rows in row_bands(w):
            band = self.encode(w[rows])
            for key, value in band.items():
                if value.shape[:1] != (len(out[rows]),):
                    raise AssertionError(f"format {self}: encoded array {key!r} is not one row per weight row")
                enc.setdefault(key, np.empty(out.shape[:1] + value.shape[1:], value.dtype))[rows] = value
            out[rows] = self.decode(band, w[rows].shape)
        return enc, out

    def prepare(self, w: np.ndarray) -> np.ndarray:
        """Validate a weight and return it as float32, refusing non-finite values."""
        w = np.asarray(w, dtype=np.float32)
        self.check_shape(w.shape)
        if not np.isfinite(w).all():
            raise FormatError(f"format {self}: weight contains NaN or infinite values")
        return w


def row_bands(w: np.ndarray) -> list[slice]:
    """Bands of rows of `w` of about BAND_ELEMENTS weights each; one band for a vector (16-bit formats also store
    norms and biases) or a small matrix."""
    if w.ndim != 2 or w.size <= BAND_ELEMENTS:
        return [slice(None)]
    rows = max(1, BAND_ELEMENTS // w.shape[1])
    return [slice(start, start + rows) for start in range(0, w.shape[0], rows)]


def registered_families() -> dict[str, type[Format]]:
    """Family name -> format class, for every registered format."""
    return dict(_REGISTRY)


def format_grammar() -> str:
    """The whole format-string grammar, as shown in error messages."""
    return " | ".join(cls.grammar() for cls in _REGISTRY.values())


def parse_format(text: str | Format) -> Format:
    """Parse a format string such as 'int4:g128:asym' or '2:4+int4:g128'.

    Unknown or malformed strings raise FormatError listing the grammar.
    """
    if isinstance(text, Format):
        return text
    s = str(text).strip().lower()
    for family in sorted(_REGISTRY, key=len, reverse=True):
        if s == family or s.startswith(family + ":") or s.startswith(family + "+"):
            rest = s[len(family):]
            try:
                return _REGISTRY[family].from_options(rest)
            except FormatError as exc:
                grammar = "" if "expected one of" in str(exc) else f"; expected one of: {format_grammar()}"
                raise FormatError(f"bad format {text!r}: {exc}{grammar}") from None
    raise FormatError(f"unknown format {text!r}; expected one of: {format_grammar()}")


def parse_options(options: str, fmt_name: str) -> list[str]:
    """Split ':a:b' into ['a', 'b']; '' gives []."""
    if not options:
        return []
    if not options.startswith(":"):
        raise FormatError(f"unexpected {options!r} after {fmt_name!r}")
    parts = options[1:].split(":")
    if any(not p for p in parts):
        raise FormatError(f"empty option in {fmt_name + options!r}")
    return parts


def to_fp16(x: np.ndarray, what: str, fmt: Format) -> np.ndarray:
    """Round to float16 (nearest even), refusing values that overflow it."""
    y = np.asarray(x, dtype=np.float32).astype(np.float16)
    if not np.isfinite(y).all():
        raise FormatError(f"format {fmt}: a {what} overflows float16 (|value| > 65504)")
    return y


def safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with 0 where b == 0 (an all-zero group quantizes to code 0)."""
    b32 = np.asarray(b, dtype=np.float32)
    out = np.zeros(np.broadcast_shapes(np.shape(a), b32.shape), dtype=np.float32)
    np.divide(a, b32, out=out, where=b32 != 0)
    return out


class GroupQuantizedFormat(Format):
    """A format storing codes plus per-group parameters along the input dimension.

    Algorithms with error feedback (GPTQ, SparseGPT's joint mode, AWQ's search)
    drive these formats a few columns at a time: `fit` chooses a group's
    parameters, `round` maps weights to codes under given parameters and `scale`
    maps codes back. Round-to-nearest `encode` is the same three steps applied to
    every group at once, so both paths produce identical codes for identical input.
    """

    param_dtypes: ClassVar[dict[str, str]]  # stored parameter name -> storage dtype

    @abstractmethod
    def group_size(self, k: int) -> int:
        """Input features per parameter group for a row of `k`."""

    @abstractmethod
    def fit(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Parameters of groups laid along the last axis: (..., G) -> each (...), already storage-exact.

        A group's parameters depend on its minimum and maximum only (the clip search
        fits ranges through this), a contract the format tests check for every format.
        """

    @abstractmethod
    def round(self, w: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Codes of `w` (..., C) under parameters broadcastable to it (e.g. (..., 1))."""

    @abstractmethod
    def scale(self, codes: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Float32 values of codes under parameters broadcastable to them."""

    def encode(self, w: np.ndarray) -> Encoded:
        w = self.prepare(w)
        return self.encode_with(w, self.fit(to_groups(w, self.group_size(w.shape[1]))))

    def encode_with(self, w: np.ndarray, params: dict[str, np.ndarray]) -> Encoded:
        """Codes of `w` (N, K) under given per-group parameters (each (N, groups)), e.g. clipped ones."""
        n, k = w.shape
        groups = to_groups(w, self.group_size(k))  # (N, ng, G)
        codes = self.round(groups, {p: v[..., None] for p, v in params.items()}).reshape(n, -1)[:, :k]
        return {"codes": codes, **{p: v.astype(self.param_dtypes[p]) for p, v in params.items()}}

    def decode(self, enc: Encoded, shape: tuple[int, int]) -> np.ndarray:
        k = shape[1]
        g = self.group_size(k)
        params = {p: per_element(enc[p].astype(np.float32), k, g) for p in self.param_dtypes}
        return self.scale(enc["codes"], params)

