"""Reading `.edgec` files: map the file, check every field, view buffers in place.

    >>> from edgec.runtime.container import open_container
    >>> with open_container("model.edgec") as f:
    ...     f.metadata["general.architecture"]
    ...     f.buffers("model.layers.0.mlp.down_proj.weight")["qdata"]   # numpy view, no copy

Every count, length, offset and string is checked against the file's size and the
limits of docs/FORMAT.md before it is used, so a truncated, corrupt or hostile file
is refused with one `ContainerError` and never makes the reader allocate by its
word. The header checksum is checked at open; a tensor's checksum the first time
its buffers are read (unless `verify=False`).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from edgec.core import container_layout as L
from edgec.core.container_layout import BufferSpec
from edgec.core.errors import ContainerError, FormatError
from edgec.core.formats import Format, parse_format

NOT_CHECKED, VERIFIED, MISMATCH = "not checked", "verified", "mismatch"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the table: its name, format, logical shape, buffers and checksum."""

    name: str
    format: Format
    shape: tuple[int, ...]
    buffers: tuple[BufferSpec, ...]
    crc32: int

    @property
    def nbytes(self) -> int:
        """Stored bytes of all its buffers (padding excluded)."""
        return sum(b.length for b in self.buffers)


@dataclass(frozen=True)
class _Deferred:
    """Where a STRING or JSON metadata value lies; decoded on first access."""

    kind: int
    start: int
    length: int
    inflated: int | None


class Metadata(Mapping):
    """The file's metadata, key -> value. STRING and JSON values are read on first access and then kept,
    so opening a file does not pay for a large tokenizer or plan it may never read; a value that turns
    out corrupt raises ContainerError then."""

    def __init__(self, values: dict[str, Any], decode: Callable[[str, _Deferred], Any]) -> None:
        self._values, self._decode = values, decode

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        if isinstance(value, _Deferred):
            value = self._values[key] = self._decode(key, value)
        return value

    def read(self, key: str) -> Any:
        """The value, decoded afresh and not kept: for a large value read once (the tokenizer's JSON,
        3.4 MB as a string for SmolLM2, which would otherwise stay in memory for the file's life)."""
        value = self._values[key]
        return self._decode(key, value) if isinstance(value, _Deferred) else value

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _Cursor:
    """Bounded little-endian reads from a region of the mapped file; overruns raise ContainerError."""

    def __init__(self, view: memoryview, start: int, end: int, where: str) -> None:
        self.view, self.pos, self.end, self.where = view, start, end, where

    def _take(self, n: int, what: str) -> int:
        if n > self.end - self.pos:
            raise ContainerError(f"{self.where}: {what} runs past the end of its section "
                                 f"(needs {n} bytes at offset {self.pos}, {self.end - self.pos} left)")
        pos, self.pos = self.pos, self.pos + n
        return pos

    def unpack(self, fmt: str, what: str) -> Any:
        s = struct.Struct("<" + fmt)
        return s.unpack_from(self.view, self._take(s.size, what))[0]

    def raw(self, n: int, what: str) -> memoryview:
        pos = self._take(n, what)
        return self.view[pos:pos + n]

    def text(self, length_fmt: str, limit: int, what: str, ascii_only: bool = False) -> str:
        n = self.unpack(length_fmt, f"{what} length")
        if not 1 <= n <= limit:
            raise ContainerError(f"{self.where}: {what} length {n} is outside 1..{limit}")
        data = bytes(self.raw(n, what))
        try:
            return data.decode("ascii" if ascii_only else "utf-8")
        except UnicodeDecodeError:
            raise ContainerError(f"{self.where}: {what} is not valid {'ASCII' if ascii_only else 'UTF-8'}") from None


class EdgecFile:
    """An open `.edgec` file: metadata, tensor table and zero-copy views of the data.

    Views stay valid after `close()` for as long as they are referenced: the mapping is
    released when the last one goes.
    """

    def __init__(self, path: str | os.PathLike[str], verify: bool = True) -> None:
        self.path = Path(path)
        self.verify_checksums = verify
        self._mm = _map(self.path)
        try:
            self._parse()
        except BaseException:
            self.close()
            raise
        self._state = {name: NOT_CHECKED for name in self.tensors}

    # ---- parsing ------------------------------------------------------------------
    def _fail(self, message: str) -> ContainerError:
        return ContainerError(f"{self.path}: {message}")

    def _parse(self) -> None:
        with memoryview(self._mm) as view:
            self._parse_view(view, len(self._mm))

    def _parse_view(self, view: memoryview, size: int) -> None:
        if size < L.PREAMBLE.size:
            raise self._fail(f"truncated: {size} bytes is shorter than the {L.PREAMBLE.size}-byte preamble")
        (magic, self.version, flags, self.buffer_alignment, self.data_alignment, metadata_count, metadata_length,
         tensor_count, table_length, self.data_offset, data_length, header_crc, reserved) = L.PREAMBLE.unpack_from(view, 0)
        if magic != L.MAGIC:
            raise self._fail("not an .edgec file (wrong magic bytes)")
        if self.version != L.VERSION:
            newer = " (newer than this reader; upgrade edgec)" if self.version > L.VERSION else ""
            raise self._fail(f"unsupported format version {self.version}{newer}; this reader knows version {L.VERSION}")
        if flags != 0 or reserved != 0:
            raise self._fail(f"unknown flags {flags:#x} or reserved field {reserved:#x} (version {L.VERSION} requires 0)")
        self._check_preamble(size, metadata_count, metadata_length, tensor_count, table_length, data_length)
        header_end = L.PREAMBLE.size + metadata_length + table_length
        crc = zlib.crc32(view[L.PREAMBLE.size:header_end], zlib.crc32(view[:L.CRC_OFFSET]))
        if crc != header_crc:
            raise self._fail(f"header checksum mismatch (stored {header_crc:08x}, computed {crc:08x}): the file is corrupt")
        self.metadata, self.value_types = self._parse_metadata(view, metadata_count, L.PREAMBLE.size + metadata_length)
        self.tensors = self._parse_table(view, tensor_count, L.PREAMBLE.size + metadata_length, header_end, data_length)
        self._check_required_keys()
        self._check_values()
        self.data_length = data_length

    def _check_preamble(self, size: int, metadata_count: int, metadata_length: int, tensor_count: int,
                        table_length: int, data_length: int) -> None:
        buffer_al, data_al = self.buffer_alignment, self.data_alignment
        if not (_power_of_two(data_al) and L.MIN_DATA_ALIGNMENT <= data_al <= L.MAX_DATA_ALIGNMENT):
            raise self._fail(f"data_alignment {data_al} is not a power of two in "
                             f"{L.MIN_DATA_ALIGNMENT}..{L.MAX_DATA_ALIGNMENT}")
        if not (_power_of_two(buffer_al) and L.MIN_BUFFER_ALIGNMENT <= buffer_al <= data_al):
            raise self._fail(f"buffer_alignment {buffer_al} is not a power of two in {L.MIN_BUFFER_ALIGNMENT}..{data_al}")
        if metadata_count > L.MAX_METADATA_COUNT or metadata_length > L.MAX_METADATA_LENGTH:
            raise self._fail(f"metadata of {metadata_count} keys in {metadata_length} bytes exceeds the limits "
                             f"({L.MAX_METADATA_COUNT} keys, {L.MAX_METADATA_LENGTH} bytes)")
        if tensor_count > L.MAX_TENSOR_COUNT:
            raise self._fail(f"tensor_count {tensor_count} exceeds the limit {L.MAX_TENSOR_COUNT}")
        header_end = L.PREAMBLE.size + metadata_length + table_length
        if header_end > size:
            raise self._fail(f"truncated: the header claims {header_end} bytes, the file has {size}")
        if self.data_offset != L.align_up(header_end, data_al):
            raise self._fail(f"data_offset {self.data_offset} is not the header's end {header_end} "
                             f"aligned up to {data_al}")
        if self.data_offset + data_length != size:
            what = "truncated" if self.data_offset + data_length > size else "trailing bytes"
            raise self._fail(f"{what}: header says {self.data_offset + data_length} bytes, the file has {size}")

    def _parse_metadata(self, view: memoryview, count: int, end: int) -> tuple[Metadata, dict[str, int]]:
        cursor = _Cursor(view, L.PREAMBLE.size, end, f"{self.path}: metadata")
        values: dict[str, Any] = {}
        types: dict[str, int] = {}
        for _ in range(count):
            key = cursor.text("H", L.MAX_KEY_LENGTH, "key", ascii_only=True)
            if not L.KEY_PATTERN.fullmatch(key):
                raise self._fail(f"metadata key {key!r} is not dotted lower-case [a-z0-9_.]")
            if key in values:
                raise self._fail(f"metadata key {key!r} appears twice")
            kind = cursor.unpack("B", f"type of {key}")
            values[key] = self._parse_value(cursor, kind, key)
            types[key] = L.COMPRESSED.get(kind, kind)
        if cursor.pos != end:
            raise self._fail(f"metadata_length says {end - L.PREAMBLE.size} bytes but the "
                             f"{count} keys take {cursor.pos - L.PREAMBLE.size}")
        return Metadata(values, self._decode), types

    def _parse_value(self, cursor: _Cursor, kind: int, key: str) -> Any:
        if kind == L.BOOL:
            value = cursor.unpack("B", key)
            if value > 1:
                raise self._fail(f"metadata {key!r}: BOOL value {value} is not 0 or 1")
            return bool(value)
        if kind == L.INT:
            return cursor.unpack("q", key)
        if kind == L.FLOAT:
            value = cursor.unpack("d", key)
            if not np.isfinite(value):
                raise self._fail(f"metadata {key!r}: FLOAT value is not finite")
            return value
        if kind in (L.STRING, L.JSON, L.ZSTRING, L.ZJSON):
            inflated = cursor.unpack("Q", f"{key} inflated length") if kind in L.COMPRESSED else None
            n = cursor.unpack("Q", f"{key} length")
            if max(n, inflated or 0) > L.MAX_VALUE_LENGTH:
                raise self._fail(f"metadata {key!r}: value of {max(n, inflated or 0)} bytes exceeds the limit {L.MAX_VALUE_LENGTH}")
            if inflated is not None and inflated > L.MAX_INFLATION * n:
                raise self._fail(f"metadata {key!r}: declared inflated length {inflated} is over {L.MAX_INFLATION} times "
                                 f"its {n} stored bytes")
            start = cursor.pos
            cursor.raw(n, key)
            return _Deferred(kind, start, n, inflated)
        raise self._fail(f"metadata {key!r}: unknown value type {kind}")

    def _decode(self, key: str, value: _Deferred) -> Any:
        """A STRING or JSON value's content, read (and inflated, and parsed) on first access."""
        try:
            data = bytes(memoryview(self._mm)[value.start:value.start + value.length])
        except ValueError:
            raise self._fail(f"metadata {key!r}: the file is closed") from None
        if value.inflated is not None:
            data = self._inflate(data, value.inflated, key)
        try:
            text = data.decode("utf-8")
            return text if L.COMPRESSED.get(value.kind, value.kind) == L.STRING else json.loads(text)
        except UnicodeDecodeError:
            raise self._fail(f"metadata {key!r}: not valid UTF-8") from None
        except (ValueError, RecursionError):
            raise self._fail(f"metadata {key!r}: not valid JSON") from None

    def _inflate(self, data: bytes, inflated: int, key: str) -> bytes:
        """Decompress a zlib value to exactly its declared length (at most MAX_INFLATION x its stored bytes)."""
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, inflated + 1)
        except zlib.error:
            raise self._fail(f"metadata {key!r}: corrupt compressed value") from None
        if len(out) != inflated or not inflater.eof or inflater.unused_data:
            raise self._fail(f"metadata {key!r}: compressed value does not inflate to its declared {inflated} bytes")
        return out

    def _parse_table(self, view: memoryview, count: int, start: int, end: int,
                     data_length: int) -> dict[str, TensorEntry]:
        cursor = _Cursor(view, start, end, f"{self.path}: tensor table")
        tensors: dict[str, TensorEntry] = {}
        next_free = 0
        for _ in range(count):
            entry = self._parse_entry(cursor)
            if entry.name in tensors:
                raise self._fail(f"tensor {entry.name!r} appears twice")
            for buf in entry.buffers:
                where = f"tensor {entry.name!r} buffer {buf.name!r}"
                if buf.offset % self.buffer_alignment:
                    raise self._fail(f"{where}: offset {buf.offset} is not a multiple of {self.buffer_alignment}")
                if buf.offset < next_free:
                    raise self._fail(f"{where}: offset {buf.offset} overlaps or precedes the previous buffer")
                if buf.offset + buf.length > data_length:
                    raise self._fail(f"{where}: bytes {buf.offset}..{buf.offset + buf.length} lie outside the "
                                     f"{data_length}-byte data section")
                next_free = buf.offset + buf.length
            tensors[entry.name] = entry
        if cursor.pos != end:
            raise self._fail(f"table_length says {end - start} bytes but the {count} tensors take {cursor.pos - start}")
        return tensors

    def _parse_entry(self, cursor: _Cursor) -> TensorEntry:
        name = cursor.text("H", L.MAX_NAME_LENGTH, "tensor name")
        text = cursor.text("H", L.MAX_FORMAT_LENGTH, f"format of {name!r}", ascii_only=True)
        shape = self._parse_shape(cursor, f"tensor {name!r}")
        try:
            fmt = parse_format(text)
            expected = fmt.buffers(shape)
        except FormatError as exc:
            raise self._fail(f"tensor {name!r}: {exc}") from None
        if str(fmt) != text:
            raise self._fail(f"tensor {name!r}: format {text!r} is not canonical (write {str(fmt)!r})")
        count = cursor.unpack("B", f"buffer count of {name!r}")
        extras = L.EXTRA_BUFFERS if len(shape) == 2 else ()
        if not len(expected) <= count <= len(expected) + len(extras):
            raise self._fail(f"tensor {name!r}: {count} buffers, format {fmt} stores {len(expected)}")
        buffers = tuple(self._parse_buffer(cursor, name) for _ in range(count))
        wanted = [(b.name, np.dtype(b.dtype).name, b.shape) for b in expected]
        remaining = list(extras)
        for buf in buffers[len(expected):]:
            if buf.name not in remaining:
                raise self._fail(f"tensor {name!r}: unexpected buffer {buf.name!r} (extras are {', '.join(extras)}, in order)")
            remaining = remaining[remaining.index(buf.name) + 1:]
            wanted.append((buf.name, "float32", L.extra_buffer_shape(buf.name, shape)))
        for buf, (want_name, want_dtype, want_shape) in zip(buffers, wanted):
            if (buf.name, buf.dtype.name, buf.shape) != (want_name, want_dtype, want_shape):
                raise self._fail(f"tensor {name!r}: buffer {buf.name!r} {buf.dtype.name} {buf.shape} should be "
                                 f"{want_name!r} {want_dtype} {want_shape} for format {fmt} and shape {shape}")
        crc = cursor.unpack("I", f"checksum of {name!r}")
        return TensorEntry(name, fmt, shape, buffers, crc)

    def _parse_buffer(self, cursor: _Cursor, tensor: str) -> BufferSpec:
        name = cursor.text("B", L.MAX_BUFFER_NAME_LENGTH, f"buffer name in {tensor!r}", ascii_only=True)
        code = cursor.unpack("B", f"dtype of {tensor!r} buffer {name!r}")
        if code not in L.DTYPES:
            raise self._fail(f"tensor {tensor!r} buffer {name!r}: unknown dtype code {code}")
        dtype = L.DTYPES[code]
        shape = self._parse_shape(cursor, f"tensor {tensor!r} buffer {name!r}")
        offset = cursor.unpack("Q", f"offset of {tensor!r} buffer {name!r}")
        length = cursor.unpack("Q", f"length of {tensor!r} buffer {name!r}")
        if length != prod(shape) * dtype.itemsize:
            raise self._fail(f"tensor {tensor!r} buffer {name!r}: length {length} is not "
                             f"{prod(shape)} x {dtype.itemsize} bytes")
        return BufferSpec(name, dtype, shape, offset, length)

    def _parse_shape(self, cursor: _Cursor, what: str) -> tuple[int, ...]:
        rank = cursor.unpack("B", f"rank of {what}")
        if not 1 <= rank <= L.MAX_RANK:
            raise self._fail(f"{what}: rank {rank} is outside 1..{L.MAX_RANK}")
        shape = tuple(cursor.unpack("Q", f"shape of {what}") for _ in range(rank))
        if min(shape) < 1 or prod(shape) > L.MAX_ELEMENTS:
            raise self._fail(f"{what}: shape {shape} has a zero dimension or more than 2**40 elements")
        return shape

    def _check_required_keys(self) -> None:
        for key, kind in L.REQUIRED_KEYS.items():
            if key not in self.metadata:
                raise self._fail(f"required metadata key {key!r} is missing")
            if self.value_types[key] != kind:
                raise self._fail(f"metadata {key!r} is {L.VALUE_TYPES.get(self.value_types[key], '?')}, "
                                 f"should be {L.VALUE_TYPES[kind]}")
        for key in ("edgec.layers", "edgec.aliases"):
            if not isinstance(self.metadata[key], dict):
                raise self._fail(f"metadata {key!r} should be a JSON object")
        for alias, target in self.metadata["edgec.aliases"].items():
            if not isinstance(target, str) or target not in self.tensors or alias in self.tensors:
                raise self._fail(f"metadata 'edgec.aliases': {alias!r} -> {target!r} does not name a stored tensor "
                                 f"(or shadows one)")

    def _check_values(self) -> None:
        """Decode every value once and check the ones that refer to each other, at open: `inspect`,
        `run` and `load` then refuse the same files, before anything is prepared or executed."""
        decoded = {key: self.metadata.read(key) for key in self.metadata}  # UTF-8, JSON, inflation; not kept
        if decoded["general.task"] not in L.TASKS:
            raise self._fail(f"metadata 'general.task' is {decoded['general.task']!r}, not one of {', '.join(L.TASKS)}")
        for key in ("model.config", "tokenizer.config"):
            if not isinstance(decoded[key], dict):
                raise self._fail(f"metadata {key!r} should be a JSON object")
        if not isinstance(decoded["edgec.plan"], (dict, type(None))):
            raise self._fail("metadata 'edgec.plan' should be a JSON object or null")
        for module, entry in self.metadata["edgec.layers"].items():
            name = f"{module}.weight"
            stored = self.tensors.get(self.metadata["edgec.aliases"].get(name, name))
            if not isinstance(entry, dict) or stored is None or entry.get("format") != str(stored.format):
                raise self._fail(f"metadata 'edgec.layers': {module!r} -> {entry!r} does not describe a stored tensor "
                                 f"{name!r} in its stored format")

    # ---- access -------------------------------------------------------------------
    def resolve(self, name: str) -> TensorEntry:
        """The stored tensor behind `name` (following `edgec.aliases`); KeyError if none."""
        name = self.metadata["edgec.aliases"].get(name, name)
        return self.tensors[name]

    def buffers(self, name: str) -> dict[str, np.ndarray]:
        """Read-only numpy views of a tensor's stored buffers, checksum-verified on first use."""
        entry = self.resolve(name)
        if self.verify_checksums and self._state[entry.name] != VERIFIED:
            self.verify(entry.name)
        return {b.name: np.frombuffer(self._mm, b.dtype, prod(b.shape), self.data_offset + b.offset).reshape(b.shape)
                for b in entry.buffers}

    def dequantize(self, name: str) -> np.ndarray:
        """A tensor's float32 values (a new array), from its stored buffers."""
        entry = self.resolve(name)
        buffers = self.buffers(name)
        fmt = entry.format
        try:
            return fmt.dequantize({b.name: buffers[b.name] for b in fmt.buffers(entry.shape)}, entry.shape)
        except FormatError as exc:
            raise self._fail(f"tensor {entry.name!r}: {exc}") from None

    def verify(self, name: str | None = None) -> None:
        """Check one tensor's checksum (or every tensor's); raise ContainerError on a mismatch."""
        for entry in ([self.resolve(name)] if name is not None else self.tensors.values()):
            crc = 0
            for b in entry.buffers:
                start = self.data_offset + b.offset
                crc = zlib.crc32(memoryview(self._mm)[start:start + b.length], crc)
            if crc != entry.crc32:
                self._state[entry.name] = MISMATCH
                raise self._fail(f"tensor {entry.name!r}: checksum mismatch (stored {entry.crc32:08x}, "
                                 f"computed {crc:08x}): its data is corrupt")
            self._state[entry.name] = VERIFIED

    def checksum_state(self, name: str) -> str:
        """'verified', 'mismatch' or 'not checked' for a stored tensor."""
        return self._state[self.resolve(name).name]

    @property
    def file_size(self) -> int:
        return len(self._mm)

    def close(self) -> None:
        """Release the mapping now if no view of it is alive (else when the last view goes)."""
        try:
            self._mm.close()
        except BufferError:
            pass

    def __enter__(self) -> EdgecFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_container(path: str | os.PathLike[str], verify: bool = True) -> EdgecFile:
    """Open and check a `.edgec` file; `verify=False` skips the per-tensor checksums."""
    return EdgecFile(path, verify)


def _map(path: Path) -> mmap.mmap:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise ContainerError(f"{path}: empty file, not an .edgec file")
            return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise ContainerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ContainerError(f"{path}: is a directory, not an .edgec file") from None
    except PermissionError:
        raise ContainerError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ContainerError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0
