"""The `.edgec` layout constants shared by the reader and the writer (docs/FORMAT.md is the spec)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"\x89EDGEC\r\n"
VERSION = 1

# magic, version, flags, buffer_alignment, data_alignment, metadata_count, metadata_length,
# tensor_count, table_length, data_offset, data_length, header_crc32, reserved
PREAMBLE = struct.Struct("<8sIIIIQQQQQQII")
CRC_OFFSET = 72  # where header_crc32 sits; the header checksum skips bytes [72, 80)
assert PREAMBLE.size == 80

BUFFER_ALIGNMENT = 64
DATA_ALIGNMENT = 16384
MIN_BUFFER_ALIGNMENT = 64
MIN_DATA_ALIGNMENT = 4096
MAX_DATA_ALIGNMENT = 1 << 20

MAX_METADATA_COUNT = 65_536
MAX_METADATA_LENGTH = 1 << 30
MAX_VALUE_LENGTH = 256 << 20
MAX_TENSOR_COUNT = 1_000_000
MAX_KEY_LENGTH = 255
MAX_NAME_LENGTH = 1024
MAX_FORMAT_LENGTH = 128
MAX_BUFFER_NAME_LENGTH = 64
MAX_RANK = 8
MAX_BUFFERS = 16
MAX_ELEMENTS = 1 << 40

KEY_PATTERN = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")

BOOL, INT, FLOAT, STRING, JSON, ZSTRING, ZJSON = 1, 2, 3, 4, 5, 6, 7
VALUE_TYPES = {BOOL: "BOOL", INT: "INT", FLOAT: "FLOAT", STRING: "STRING", JSON: "JSON", ZSTRING: "ZSTRING", ZJSON: "ZJSON"}
COMPRESSED = {ZSTRING: STRING, ZJSON: JSON}  # zlib-compressed encodings of STRING and JSON values
COMPRESS_ABOVE = 64 << 10  # writers compress STRING and JSON values longer than this
MAX_INFLATION = 64  # a compressed value may inflate to at most this many times its stored bytes

DTYPES: dict[int, np.dtype] = {
    1: np.dtype("u1"), 2: np.dtype("i1"), 3: np.dtype("<u2"), 4: np.dtype("<i2"),
    5: np.dtype("<f2"), 6: np.dtype("<u4"), 7: np.dtype("<i4"), 8: np.dtype("<f4"),
}
DTYPE_CODES: dict[str, int] = {dtype.name: code for code, dtype in DTYPES.items()}

# Required metadata keys and their value types (docs/FORMAT.md, "Required keys").
TASKS = ("causal-lm", "encoder")  # the values of general.task

REQUIRED_KEYS: dict[str, int] = {
    "general.architecture": STRING,
    "general.name": STRING,
    "general.task": STRING,
    "model.config": JSON,
    "tokenizer.json": STRING,
    "tokenizer.config": JSON,
    "edgec.layers": JSON,
    "edgec.plan": JSON,
    "edgec.aliases": JSON,
    "provenance.edgec_version": STRING,
    "provenance.created": STRING,
    "provenance.source_name": STRING,
    "provenance.source_sha256": STRING,
    "provenance.calibration": JSON,
}

# Optional buffers after a format's own, in this order: name -> (dtype, shape from the tensor's (N, K)).
EXTRA_BUFFERS = ("input_scale", "act_scale")


@dataclass(frozen=True)
class BufferSpec:
    """One stored buffer as the tensor table describes it."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int  # from the data section's start
    length: int  # bytes


def extra_buffer_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of an extra buffer (float32) of a 2-D tensor of `shape`."""
    return (shape[1],) if name == "input_scale" else (1,)


def align_up(value: int, alignment: int) -> int:
    """The smallest multiple of `alignment` (a power of two) that is >= value."""
    return (value + alignment - 1) & ~(alignment - 1)
