"""Print the worked byte examples of docs/FORMAT.md (the test suite checks the document matches).

    python docs/format_examples.py            # print the examples
    python docs/format_examples.py --write    # replace them in docs/FORMAT.md
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgec.core import container_layout as L
from edgec.core.formats import parse_format
from edgec.exporters.edgec_writer import TensorToWrite, write_container

FORMATS = ["fp16", "bf16", "int8", "int4:g32", "int4:g32:asym", "int3:g32", "int2:g32", "nf4:g32", "fp8", "2:4",
           "2:4+int4:g32"]
DOC = Path(__file__).parent / "FORMAT.md"
BEGIN, END = "<!-- examples:begin -->", "<!-- examples:end -->"


def example_weight() -> np.ndarray:
    """(2, 32): row 0 = linspace(-1, 1, 32); row 1 = 0.5 sin(j) for j = 0..31."""
    return np.stack([np.linspace(-1, 1, 32), 0.5 * np.sin(np.arange(32))]).astype(np.float32)


def hex_rows(array: np.ndarray) -> list[str]:
    """One line of little-endian hex bytes per row of a stored buffer."""
    data = np.ascontiguousarray(array).view(np.uint8).reshape(array.shape[0], -1)
    return [" ".join(f"{b:02x}" for b in row) for row in data]


def format_example(text: str) -> str:
    fmt = parse_format(text)
    w = example_weight()
    packed = fmt.quantize(w)
    deq = fmt.dequantize(packed, w.shape)
    lines = [f"#### `{fmt}`", "", "```"]
    for buf in fmt.buffers(w.shape):
        lines.append(f"{buf.name}  {buf.dtype} {buf.shape}, {buf.nbytes} bytes:")
        lines += [f"  row {i}: {row}" for i, row in enumerate(hex_rows(packed[buf.name]))]
    lines.append("dequantized, first 8 of each row:")
    lines += [f"  row {i}: " + " ".join(f"{v:+.4f}" for v in deq[i, :8]) for i in range(2)]
    lines += ["```", ""]
    return "\n".join(lines)


def minimal_file() -> bytes:
    """An `.edgec` file holding one int4:g32 tensor `w` (the example weight) with the smallest required metadata."""
    metadata = {key: ({} if key in ("edgec.layers", "edgec.aliases") else None) if kind == L.JSON else "x"
                for key, kind in L.REQUIRED_KEYS.items()}
    fmt = parse_format("int4:g32")
    tensor = TensorToWrite("w", fmt, (2, 32), lambda: fmt.quantize(example_weight()))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "example.edgec"
        write_container(path, metadata, [tensor])
        return path.read_bytes()


def file_example() -> str:
    data = minimal_file()
    fields = L.PREAMBLE.unpack_from(data, 0)
    names = ["magic", "version", "flags", "buffer_alignment", "data_alignment", "metadata_count", "metadata_length",
             "tensor_count", "table_length", "data_offset", "data_length", "header_crc32", "reserved"]
    sizes = [8, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 4, 4]
    lines = ["#### A whole file", "",
             "One `int4:g32` tensor named `w` (the weight above), every required key set to the string `\"x\"`, "
             "JSON `null` or `{}`. Its preamble, field by field:", "", "```"]
    offset = 0
    for name, size, value in zip(names, sizes, fields):
        shown = value.hex(" ") if isinstance(value, bytes) else f"{value}" if name != "header_crc32" else f"{value:#010x}"
        lines.append(f"{offset:3d}  {data[offset:offset + size].hex(' '):<24}  {name} = {shown}")
        offset += size
    table_start = L.PREAMBLE.size + fields[6]
    lines += ["```", "", f"Its tensor table ({fields[8]} bytes at offset {table_start}):", "", "```"]
    pos = table_start
    for label, size in [("name length, 'w'", 3), ("format length, 'int4:g32'", 10), ("rank 2, shape (2, 32)", 17),
                        ("buffer count", 1), ("'qdata' uint8 rank 2 (2, 16)", 24), ("offset 0, length 32", 16),
                        ("'scale' float16 rank 2 (2, 1)", 24), ("offset 64, length 4", 16), ("crc32", 4)]:
        lines.append(f"{pos:5d}  {data[pos:pos + size].hex(' ')}  {label}")
        pos += size
    lines += ["```", "", f"The data section starts at {fields[9]}: `qdata` at {fields[9]}, `scale` at "
              f"{fields[9] + 64}; the file is {len(data)} bytes.", ""]
    assert pos == table_start + fields[8] and struct.unpack_from("<I", data, pos - 4)[0] != 0
    return "\n".join(lines)


def examples() -> str:
    """The whole examples section of docs/FORMAT.md."""
    intro = ("#### The example weight\n\nEvery per-format example stores the same (2, 32) float32 weight: row 0 is "
             "`linspace(-1, 1, 32)`, row 1 is `0.5 sin(j)` for j = 0..31. Bytes are shown in file order.\n")
    return "\n".join([intro, *(format_example(f) for f in FORMATS), file_example()])


def document_with_examples(doc: str) -> str:
    """docs/FORMAT.md's text with its examples section regenerated."""
    head, rest = doc.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{examples()}{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(document_with_examples(DOC.read_text()))
    else:
        print(examples())
