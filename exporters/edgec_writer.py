"""Writing `.edgec` files (docs/FORMAT.md), streaming one tensor at a time.

The header and tensor table depend only on formats and shapes, so they are written
first; each tensor's buffers are then produced, written and dropped in turn, and
the checksums are patched in at the end. The file is written under a temporary
name beside the target and renamed only when complete, so an interrupted or failed
write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgec.core import container_layout as L
from edgec.core.errors import EdgecError
from edgec.core.formats import Format
from edgec.core.output_files import atomic_output
from edgec.core.progress import progress_counter


@dataclass
class TensorToWrite:
    """A tensor to write: `produce()` returns its buffers (the format's, then `extras`) when its turn comes."""

    name: str
    format: Format
    shape: tuple[int, ...]
    produce: Callable[[], dict[str, np.ndarray]]
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class WriteReport:
    """What was written: total bytes, and how they split into header, padding and stored buffers."""

    path: Path
    file_bytes: int
    header_bytes: int  # preamble + metadata + tensor table
    payload_bytes: int  # the tensors' buffers
    tensors: int

    @property
    def padding_bytes(self) -> int:
        return self.file_bytes - self.header_bytes - self.payload_bytes


def write_container(path: Path, metadata: dict[str, Any], tensors: Sequence[TensorToWrite],
                    progress: bool = False) -> WriteReport:
    """Write an `.edgec` file atomically; `metadata` values are typed by their Python type (str -> STRING,
    bool/int/float -> BOOL/INT/FLOAT, dict, list or None -> JSON; STRING and JSON values
    over 64 KiB are stored zlib-compressed)."""
    path = Path(path)
    metadata_bytes = _encode_metadata(metadata)
    plans = [_plan_tensor(t) for t in tensors]
    table, crc_positions, payload = _encode_table(plans, L.PREAMBLE.size + len(metadata_bytes))
    header_end = L.PREAMBLE.size + len(metadata_bytes) + len(table)
    data_offset = L.align_up(header_end, L.DATA_ALIGNMENT)
    data_length = max((b.offset + b.length for _, specs in plans for b in specs), default=0)
    with atomic_output(path) as tmp, open(tmp, "wb") as out:
        out.write(bytes(L.PREAMBLE.size) + metadata_bytes + table + bytes(data_offset - header_end))
        crcs = [_write_tensor(out, tensor, specs, data_offset)
                for tensor, (_, specs) in zip(progress_counter(tensors, desc="writing", unit="tensor", enabled=progress), plans)]
        if out.tell() != data_offset + data_length:
            raise EdgecError(f"{path}: internal error, wrote {out.tell()} bytes, expected {data_offset + data_length}")
        for position, crc in zip(crc_positions, crcs):
            out.seek(position)
            out.write(struct.pack("<I", crc))
        preamble = L.PREAMBLE.pack(L.MAGIC, L.VERSION, 0, L.BUFFER_ALIGNMENT, L.DATA_ALIGNMENT, len(metadata),
                                   len(metadata_bytes), len(tensors), len(table), data_offset, data_length, 0, 0)
        table_with_crcs = _patch_crcs(table, [p - header_end + len(table) for p in crc_positions], crcs)
        header_crc = zlib.crc32(metadata_bytes + table_with_crcs, zlib.crc32(preamble[:L.CRC_OFFSET]))
        out.seek(0)
        out.write(preamble[:L.CRC_OFFSET] + struct.pack("<II", header_crc, 0))
        out.flush()
        os.fsync(out.fileno())
    return WriteReport(path, data_offset + data_length, header_end, payload, len(tensors))


def _encode_metadata(metadata: dict[str, Any]) -> bytes:
    missing = [key for key in L.REQUIRED_KEYS if key not in metadata]
    if missing:
        raise EdgecError(f"cannot write an .edgec file without metadata {', '.join(missing)}")
    parts = []
    for key, value in metadata.items():
        if not L.KEY_PATTERN.fullmatch(key) or len(key) > L.MAX_KEY_LENGTH:
            raise EdgecError(f"metadata key {key!r} is not dotted lower-case [a-z0-9_.] of at most {L.MAX_KEY_LENGTH} bytes")
        kind, payload = _encode_value(value)
        if key in L.REQUIRED_KEYS and L.COMPRESSED.get(kind, kind) != L.REQUIRED_KEYS[key]:
            raise EdgecError(f"metadata {key!r} must be {L.VALUE_TYPES[L.REQUIRED_KEYS[key]]}, "
                             f"got {L.VALUE_TYPES[L.COMPRESSED.get(kind, kind)]}")
        encoded_key = key.encode("ascii")
        parts.append(struct.pack("<H", len(encoded_key)) + encoded_key + struct.pack("<B", kind) + payload)
    return b"".join(parts)


def _encode_value(value: Any) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return L.BOOL, struct.pack("<B", value)
    if isinstance(value, int):
        return L.INT, struct.pack("<q", value)
    if isinstance(value, float):
        return L.FLOAT, struct.pack("<d", value)
    if isinstance(value, str):
        kind, text = L.STRING, value
    else:
        kind = L.JSON
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    data = text.encode("utf-8")
    if len(data) > L.MAX_VALUE_LENGTH:
        raise EdgecError(f"a metadata value of {len(data)} bytes exceeds the limit of {L.MAX_VALUE_LENGTH}")
    packed = zlib.compress(data, 9) if len(data) > L.COMPRESS_ABOVE else b""
    if packed and len(data) <= L.MAX_INFLATION * len(packed):  # readers refuse higher ratios as bombs
        compressed_kind = {v: k for k, v in L.COMPRESSED.items()}[kind]
        return compressed_kind, struct.pack("<QQ", len(data), len(packed)) + packed
    return kind, struct.pack("<Q", len(data)) + data


def _plan_tensor(tensor: TensorToWrite) -> tuple[TensorToWrite, list[L.BufferSpec]]:
    """The tensor's buffers with dtypes and shapes (offsets filled in by `_encode_table`)."""
    specs = [L.BufferSpec(b.name, np.dtype(b.dtype), tuple(b.shape), 0, b.nbytes) for b in tensor.format.buffers(tensor.shape)]
    for extra in tensor.extras:
        if extra not in L.EXTRA_BUFFERS or len(tensor.shape) != 2:
            raise EdgecError(f"tensor {tensor.name!r}: extra buffer {extra!r} is not one of {L.EXTRA_BUFFERS} on a 2-D tensor")
        shape = L.extra_buffer_shape(extra, tensor.shape)
        specs.append(L.BufferSpec(extra, np.dtype("float32"), shape, 0, 4 * int(np.prod(shape))))
    if list(tensor.extras) != [e for e in L.EXTRA_BUFFERS if e in tensor.extras]:
        raise EdgecError(f"tensor {tensor.name!r}: extra buffers must come in the order {L.EXTRA_BUFFERS}")
    return tensor, specs


def _encode_table(plans: list[tuple[TensorToWrite, list[L.BufferSpec]]], start: int) -> tuple[bytes, list[int], int]:
    """The tensor table (checksums zero), each checksum's file position, and the buffers' total bytes.

    Fills each BufferSpec's offset in place of the placeholder, in table order.
    """
    parts: list[bytes] = []
    crc_positions: list[int] = []
    size = start
    offset = 0
    payload = 0
    names: set[str] = set()
    for tensor, specs in plans:
        if tensor.name in names:
            raise EdgecError(f"tensor {tensor.name!r} is written twice")
        names.add(tensor.name)
        entry = [_str(tensor.name, "H"), _str(str(tensor.format), "H"), _shape(tensor.shape), struct.pack("<B", len(specs))]
        for i, spec in enumerate(specs):
            offset = L.align_up(offset, L.BUFFER_ALIGNMENT)
            specs[i] = spec = L.BufferSpec(spec.name, spec.dtype, spec.shape, offset, spec.length)
            entry += [_str(spec.name, "B"), struct.pack("<B", L.DTYPE_CODES[spec.dtype.name]), _shape(spec.shape),
                      struct.pack("<QQ", spec.offset, spec.length)]
            offset += spec.length
            payload += spec.length
        blob = b"".join(entry)
        crc_positions.append(size + len(blob))
        parts.append(blob + bytes(4))
        size += len(blob) + 4
    return b"".join(parts), crc_positions, payload


def _write_tensor(out: BinaryIO, tensor: TensorToWrite, specs: list[L.BufferSpec], data_offset: int) -> int:
    arrays = tensor.produce()
    if set(arrays) != {s.name for s in specs}:
        raise EdgecError(f"tensor {tensor.name!r}: produced buffers {sorted(arrays)}, "
                         f"format {tensor.format} needs {[s.name for s in specs]}")
    crc = 0
    for spec in specs:
        array = np.asarray(arrays[spec.name])
        if array.dtype != spec.dtype or tuple(array.shape) != spec.shape:
            raise EdgecError(f"tensor {tensor.name!r} buffer {spec.name!r}: got {array.dtype} {array.shape}, "
                             f"format {tensor.format} stores {spec.dtype.name} {spec.shape}")
        out.write(bytes(data_offset + spec.offset - out.tell()))
        data = memoryview(np.ascontiguousarray(array, dtype=spec.dtype.newbyteorder("<"))).cast("B")
        out.write(data)
        crc = zlib.crc32(data, crc)
    return crc


def _patch_crcs(table: bytes, positions: list[int], crcs: list[int]) -> bytes:
    patched = bytearray(table)
    for position, crc in zip(positions, crcs):
        struct.pack_into("<I", patched, position, crc)
    return bytes(patched)


def _str(text: str, length_format: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<" + length_format, len(data)) + data


def _shape(shape: tuple[int, ...]) -> bytes:
    return struct.pack(f"<B{len(shape)}Q", len(shape), *shape)
