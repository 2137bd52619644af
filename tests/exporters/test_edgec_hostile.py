"""Hostile and corrupt `.edgec` files: each is refused with one ContainerError that says what is wrong.

Most cases patch a field of the golden file and then recompute the header checksum,
as an attacker would, so that the check under test, not the checksum, refuses it.
The fuzz test mutates valid files at random and proves the reader raises nothing
but ContainerError and never allocates by a file's word.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import pytest
from container_samples import GOLDEN, METADATA, sample_tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgec.core import container_layout as L
from edgec.core.errors import ContainerError
from edgec.exporters.edgec_writer import write_container
from edgec.runtime.container import open_container

GOLDEN_BYTES = GOLDEN.read_bytes()


def refresh_crc(data: bytearray) -> bytearray:
    """Recompute the header checksum from the (possibly patched) preamble's own lengths."""
    metadata_length, table_length = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<Q", data, 48)[0]
    end = min(len(data), L.PREAMBLE.size + metadata_length + table_length)
    crc = zlib.crc32(bytes(data[L.PREAMBLE.size:end]), zlib.crc32(bytes(data[:L.CRC_OFFSET])))
    struct.pack_into("<I", data, L.CRC_OFFSET, crc)
    return data


def patched(offset: int, fmt: str, value, data: bytes = GOLDEN_BYTES) -> bytearray:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return refresh_crc(out)


def key_position(key: str, data: bytes = GOLDEN_BYTES) -> int:
    """Offset of a metadata entry (its key's length field)."""
    encoded = key.encode()
    return data.index(struct.pack("<H", len(encoded)) + encoded)


def entry_fields(tensor: str, data: bytes = GOLDEN_BYTES) -> dict[str, int]:
    """Offsets of a tensor table entry's fields: format, rank, buffer count, and per buffer its fields."""
    encoded = tensor.encode()
    pos = data.index(struct.pack("<H", len(encoded)) + encoded) + 2 + len(encoded)
    fields = {"format": pos}
    pos += 2 + struct.unpack_from("<H", data, pos)[0]
    fields["rank"] = pos
    pos += 1 + 8 * data[pos]
    fields["buffer_count"] = pos
    count = data[pos]
    pos += 1
    for i in range(count):
        fields[f"{i}.name"] = pos
        pos += 1 + data[pos]
        fields[f"{i}.dtype"] = pos
        fields[f"{i}.rank"] = pos + 1
        pos += 2 + 8 * data[pos + 1]
        fields[f"{i}.offset"], fields[f"{i}.length"] = pos, pos + 8
        pos += 16
    fields["crc"] = pos
    return fields


def refused(data: bytes, tmp_path: Path, match: str) -> None:
    path = tmp_path / "hostile.edgec"
    path.write_bytes(bytes(data))
    with pytest.raises(ContainerError, match=match):
        with open_container(path) as f:
            dict(f.metadata)
            for name in f.tensors:
                f.dequantize(name)


Q_PROJ = "model.layers.0.self_attn.q_proj.weight"
DOWN = "model.layers.0.mlp.down_proj.weight"


@pytest.mark.parametrize("make, match", [
    (lambda: b"GGUF" + GOLDEN_BYTES[4:], "wrong magic"),
    (lambda: patched(8, "I", 2), "version 2 .*newer than this reader"),
    (lambda: patched(12, "I", 1), "flags"),
    (lambda: patched(16, "I", 48), "buffer_alignment 48"),
    (lambda: patched(20, "I", 1 << 30), "data_alignment"),
    (lambda: patched(24, "Q", 1 << 40), "metadata of"),
    (lambda: patched(32, "Q", 1 << 62), "metadata of"),
    (lambda: patched(40, "Q", 2**64 - 1), "tensor_count"),
    (lambda: patched(48, "Q", 1 << 50), "truncated: the header claims"),
    (lambda: patched(56, "Q", 0), "data_offset 0"),
    (lambda: patched(64, "Q", 1 << 60), "truncated: header says"),
    (lambda: refresh_crc(bytearray(GOLDEN_BYTES[:-100])), "truncated"),
    (lambda: refresh_crc(bytearray(GOLDEN_BYTES + b"\0")), "trailing bytes"),
    (lambda: bytes(GOLDEN_BYTES[:40]), "shorter than the 80-byte preamble"),
    (lambda: patched(200, "B", GOLDEN_BYTES[200] ^ 1)[:72] + GOLDEN_BYTES[72:76] + patched(200, "B", GOLDEN_BYTES[200] ^ 1)[76:],
     "header checksum mismatch"),
    (lambda: patched(key_position("general.name"), "H", 60000), "key length 60000"),
    (lambda: patched(key_position("general.name") + 14, "B", 9), "unknown value type 9"),
    (lambda: patched(key_position("general.name") + 15, "Q", 1 << 40), "exceeds the limit"),
    (lambda: patched(key_position("general.name") + 15, "Q", 1 << 27), "runs past the end"),
    (lambda: patched(key_position("general.name") + 2, "12s", b"general.nome"), "'general.name' is missing"),
    (lambda: patched(key_position("sample.ratio") + 2, "12s", b"sample.count"), "appears twice"),
    (lambda: patched(key_position("sample.flag") + 2, "11s", b"Sample.Flag"), "not dotted lower-case"),
    (lambda: patched(key_position("sample.flag") + 14, "B", 7), "BOOL value 7"),
    (lambda: patched(key_position("model.config") + 23, "B", ord("]")), "'model.config': not valid JSON"),
    (lambda: patched(key_position("general.name") + 23, "B", 0xFF), "'general.name': not valid UTF-8"),
    (lambda: patched(key_position("general.name") + 14, "B", L.JSON), "'general.name' is JSON, should be STRING"),
    (lambda: patched(entry_fields(Q_PROJ)["format"] + 2, "8s", b"int9:g32"), r"q_proj.weight'.*unknown format 'int9:g32'"),
    (lambda: patched(entry_fields(Q_PROJ)["format"] + 2, "8s", b"INT4:g32"), "not canonical"),
    (lambda: patched(entry_fields(Q_PROJ)["rank"], "B", 9), "rank 9"),
    (lambda: patched(entry_fields(Q_PROJ)["rank"] + 1, "Q", 0), "zero dimension"),
    (lambda: patched(entry_fields(Q_PROJ)["rank"] + 1, "Q", 1 << 62), "more than 2\\*\\*40"),
    (lambda: patched(entry_fields(Q_PROJ)["rank"] + 1, "Q", 65), "buffer 'qdata'.*should be 'qdata' uint8 \\(65, 32\\)"),
    (lambda: patched(entry_fields(Q_PROJ)["buffer_count"], "B", 0), "0 buffers"),
    (lambda: patched(entry_fields(Q_PROJ)["0.dtype"], "B", 99), "unknown dtype code 99"),
    (lambda: patched(entry_fields(Q_PROJ)["0.dtype"], "B", 2), "should be 'qdata' uint8"),
    (lambda: patched(entry_fields(Q_PROJ)["0.offset"], "Q", 1 << 40), "lie outside"),
    (lambda: patched(entry_fields(Q_PROJ)["0.offset"], "Q", 65), "not a multiple of 64"),
    (lambda: patched(entry_fields(Q_PROJ)["0.offset"], "Q", 0), "overlaps or precedes"),
    (lambda: patched(entry_fields(Q_PROJ)["0.length"], "Q", 2**64 - 1), "length .* is not"),
    (lambda: patched(entry_fields(DOWN)["format"] + 2, "12s", b"2:4+int4:g64"),
     "buffer 'values.scale' .* should be"),
    (lambda: patched(entry_fields(Q_PROJ)["crc"], "I", 0), "q_proj.weight': checksum mismatch"),
])
def test_hostile_file_is_refused_with_one_clear_error(make, match, tmp_path):
    refused(make(), tmp_path, match)


def test_alias_to_a_missing_tensor_is_refused(tmp_path):
    out = tmp_path / "m.edgec"
    write_container(out, {**METADATA, "edgec.aliases": {"lm_head.weight": "no.such.tensor"}}, sample_tensors())
    refused(out.read_bytes(), tmp_path, "does not name a stored tensor")


def test_deeply_nested_json_is_refused_not_a_recursion_error(tmp_path):
    out = tmp_path / "m.edgec"
    write_container(out, {**METADATA, "sample.deep": "[" * 100_000 + "]" * 100_000}, sample_tensors())
    data = bytearray(out.read_bytes())
    type_position = key_position("sample.deep", bytes(data)) + 2 + len("sample.deep")
    assert data[type_position] == L.STRING
    data[type_position] = L.JSON
    refused(refresh_crc(data), tmp_path, "'sample.deep': not valid JSON")


def test_corrupt_sparsity_metadata_is_refused_when_dequantized(tmp_path):
    data = bytearray(GOLDEN_BYTES)
    with open_container(GOLDEN) as f:
        meta = f.tensors[DOWN].buffers[0]
        data[f.data_offset + meta.offset] = 0x00  # kept positions (0, 0)
    crc_at = entry_fields(DOWN)["crc"]
    path = tmp_path / "m.edgec"
    path.write_bytes(bytes(data))
    with open_container(path, verify=False) as f:
        assert f.tensors[DOWN].crc32 == struct.unpack_from("<I", data, crc_at)[0]
        with pytest.raises(ContainerError, match="down_proj.weight'.*corrupt metadata"):
            f.dequantize(DOWN)


INTERESTING_U64 = [0, 1, 63, 64, 2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1, len(GOLDEN_BYTES)]
HEADER_END = open_container(GOLDEN).data_offset


def structural_positions() -> list[int]:
    """Where the golden file keeps counts, lengths, types, shapes and offsets: the fields a parser trusts."""
    positions = list(range(8, L.PREAMBLE.size, 4))
    with open_container(GOLDEN) as f:
        for key in f.metadata:
            at = key_position(key)
            positions += [at, at + 2 + len(key), at + 3 + len(key)]
        for name in f.tensors:
            fields = entry_fields(name)
            positions += list(fields.values()) + [fields["rank"] + 1, fields["rank"] + 9]
            positions += [at + 2 for field, at in fields.items() if field.endswith(".rank")]
    return sorted(set(positions))


STRUCTURAL = structural_positions()


@st.composite
def mutated_files(draw) -> bytes:
    data = bytearray(GOLDEN_BYTES)
    for _ in range(draw(st.integers(1, 4))):
        if len(data) < 16:
            break
        kind = draw(st.sampled_from(["field_u64", "field_u8", "field_u16", "byte", "truncate", "insert"]))
        pos = draw(st.sampled_from(STRUCTURAL)) if kind.startswith("field") else draw(st.integers(0, len(data) - 1))
        if pos + 8 > len(data):
            continue
        if kind == "field_u64":
            struct.pack_into("<Q", data, pos, draw(st.sampled_from(INTERESTING_U64)))
        elif kind == "field_u8":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "field_u16":
            struct.pack_into("<H", data, pos, draw(st.integers(0, 65535)))
        elif kind == "byte":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        else:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    keep_crc = draw(st.integers(0, 9)) == 0
    return bytes(data if keep_crc or len(data) < L.PREAMBLE.size else refresh_crc(data))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_files())
def test_fuzzed_files_raise_only_container_errors_and_allocate_little(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.edgec"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            with open_container(path) as f:
                dict(f.metadata)
                for name in list(f.tensors) + list(f.metadata["edgec.aliases"]):
                    f.dequantize(name)
        except ContainerError:
            pass
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < 16 * len(GOLDEN_BYTES) + (1 << 20)


BIG_TEXT = " ".join(str(i * 7919 % 100_003) for i in range(20_000))


def large_value_file(tmp_path: Path) -> tuple[bytearray, int]:
    """A file whose 'sample.big' STRING is large enough to be stored compressed, and where its value starts."""
    out = tmp_path / "big.edgec"
    write_container(out, {**METADATA, "sample.big": BIG_TEXT}, sample_tensors())
    data = bytearray(out.read_bytes())
    at = key_position("sample.big", bytes(data)) + 2 + len("sample.big")
    assert data[at] == L.ZSTRING
    return data, at + 1


def test_large_values_are_stored_compressed_and_read_back(tmp_path):
    data, at = large_value_file(tmp_path)
    assert len(data) < len(GOLDEN_BYTES) + len(BIG_TEXT) // 2
    with open_container(tmp_path / "big.edgec") as f:
        assert f.metadata["sample.big"] == BIG_TEXT and f.value_types["sample.big"] == L.STRING


def test_values_that_would_inflate_like_a_bomb_are_stored_plain(tmp_path):
    out = tmp_path / "plain.edgec"
    write_container(out, {**METADATA, "sample.big": "edgec " * 20_000}, sample_tensors())
    data = out.read_bytes()
    assert data[key_position("sample.big", data) + 2 + len("sample.big")] == L.STRING


@pytest.mark.parametrize("inflated, match", [
    (1 << 29, "exceeds the limit"),
    (50_000_000, "over 64 times"),
    (len(BIG_TEXT) + 1, f"does not inflate to its declared {len(BIG_TEXT) + 1} bytes"),
    (len(BIG_TEXT) - 1, f"does not inflate to its declared {len(BIG_TEXT) - 1} bytes"),
])
def test_compressed_value_must_inflate_to_its_declared_length_within_bounds(inflated, match, tmp_path):
    data, at = large_value_file(tmp_path)
    struct.pack_into("<Q", data, at, inflated)
    refused(refresh_crc(data), tmp_path, match)


def test_corrupt_compressed_value_is_refused(tmp_path):
    data, at = large_value_file(tmp_path)
    data[at + 16 + 40] ^= 0xFF
    refused(refresh_crc(data), tmp_path, "corrupt compressed value|does not inflate")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzzed_compressed_values_raise_only_container_errors(tmp_path, flips):
    data, at = large_value_file(tmp_path)
    for offset, value in flips:
        data[at + offset] = value  # the inflated and stored lengths, then the zlib stream
    path = tmp_path / "fuzz.edgec"
    path.write_bytes(bytes(refresh_crc(data)))
    tracemalloc.start()
    try:
        with open_container(path) as f:
            assert f.metadata["sample.big"] == BIG_TEXT
    except ContainerError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 64 * len(data)


def test_a_corrupt_value_is_refused_at_open_whoever_opens_the_file(tmp_path):
    # inspect reads every value and run reads only some: both open through this check, so they agree
    path = tmp_path / "m.edgec"
    path.write_bytes(bytes(patched(key_position("model.config") + 23, "B", ord("]"))))
    with pytest.raises(ContainerError, match="'model.config': not valid JSON"):
        open_container(path)
