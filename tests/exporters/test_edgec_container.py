"""The `.edgec` writer and reader on the golden sample: byte-exact output, exact values, lazy checksums."""

from __future__ import annotations

import json

import numpy as np
import pytest
from container_samples import EXTRAS, GOLDEN, LAYER_FORMATS, METADATA, extra_values, float_values, sample_tensors, write_sample

from edgec.core import container_layout as L
from edgec.core.errors import ContainerError, EdgecError
from edgec.core.formats import parse_format, registered_families
from edgec.exporters.edgec_writer import TensorToWrite, write_container
from edgec.runtime.container import MISMATCH, NOT_CHECKED, VERIFIED, open_container


def test_writer_reproduces_the_golden_file_byte_for_byte(tmp_path):
    out = tmp_path / "tiny.edgec"
    write_sample(out)
    assert out.read_bytes() == GOLDEN.read_bytes()


def test_golden_sample_covers_every_format_family():
    used = {parse_format(f).family for f in LAYER_FORMATS.values()}
    used |= {parse_format(f).inner.family for f in LAYER_FORMATS.values() if parse_format(f).is_sparse}
    assert used == set(registered_families())


def test_metadata_read_decodes_without_keeping_the_value():
    with open_container(GOLDEN) as f:
        first = f.metadata.read("model.config")
        assert first == f.metadata.read("model.config") and first is not f.metadata.read("model.config")
        assert f.metadata["model.config"] == first  # the cached access agrees


def test_reader_returns_the_metadata_and_exact_values_of_the_golden_file():
    values = float_values()
    with open_container(GOLDEN) as f:
        assert f.version == 1
        assert f.metadata == json.loads(json.dumps(METADATA))
        assert f.value_types["sample.flag"] == L.BOOL and f.value_types["model.config"] == L.JSON
        assert list(f.tensors) == list(values)
        for name, w in values.items():
            entry = f.tensors[name]
            layer = name.removesuffix(".weight")
            assert str(entry.format) == LAYER_FORMATS.get(layer, "fp16")
            assert entry.shape == w.shape
            np.testing.assert_array_equal(f.dequantize(name), entry.format.fake_quantize(w))
            stored = f.buffers(name)
            for extra, expected in extra_values(layer, w.shape).items():
                np.testing.assert_array_equal(stored[extra], expected)
            assert [b.name for b in entry.buffers][len(entry.format.buffers(w.shape)):] == list(EXTRAS.get(layer, ()))
        np.testing.assert_array_equal(f.dequantize("lm_head.weight"), f.dequantize("model.embed_tokens.weight"))


def test_buffers_are_aligned_read_only_views_of_the_mapping():
    with open_container(GOLDEN) as f:
        assert f.data_offset % L.DATA_ALIGNMENT == 0
        for entry in f.tensors.values():
            views = f.buffers(entry.name)
            for spec in entry.buffers:
                assert (f.data_offset + spec.offset) % 64 == 0
                view = views[spec.name]
                assert not view.flags.owndata and not view.flags.writeable
                assert view.__array_interface__["data"][0] % 64 == 0


def test_checksums_are_verified_lazily_and_a_corrupt_tensor_is_refused_alone(tmp_path):
    data = bytearray(GOLDEN.read_bytes())
    with open_container(GOLDEN) as f:
        victim = f.tensors["model.layers.0.mlp.gate_proj.weight"]
        data[f.data_offset + victim.buffers[0].offset + 3] ^= 0x10
        assert f.checksum_state(victim.name) == NOT_CHECKED
    bad = tmp_path / "bad.edgec"
    bad.write_bytes(bytes(data))
    with open_container(bad) as f:  # the header is intact: opening succeeds
        f.buffers("model.layers.0.mlp.up_proj.weight")
        assert f.checksum_state("model.layers.0.mlp.up_proj.weight") == VERIFIED
        with pytest.raises(ContainerError, match=r"gate_proj.weight'.*checksum mismatch"):
            f.buffers(victim.name)
        assert f.checksum_state(victim.name) == MISMATCH
    with open_container(bad, verify=False) as f:
        f.buffers(victim.name)
        assert f.checksum_state(victim.name) == NOT_CHECKED


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    def explode() -> dict:
        raise RuntimeError("interrupted")

    tensors = sample_tensors()
    tensors[5] = TensorToWrite(tensors[5].name, tensors[5].format, tensors[5].shape, explode)
    out = tmp_path / "model.edgec"
    with pytest.raises(RuntimeError, match="interrupted"):
        write_container(out, METADATA, tensors)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_buffers_that_do_not_match_the_format(tmp_path):
    tensors = sample_tensors()[:1]
    first = tensors[0]
    tensors[0] = TensorToWrite(first.name, first.format, first.shape,
                               lambda: {"values": np.zeros((2, 2), np.float16)})
    with pytest.raises(EdgecError, match=r"embed_tokens.weight' buffer 'values': got float16 \(2, 2\)"):
        write_container(tmp_path / "m.edgec", METADATA, tensors)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_metadata_without_required_keys_or_with_bad_keys(tmp_path):
    meta = {k: v for k, v in METADATA.items() if k != "tokenizer.json"}
    with pytest.raises(EdgecError, match="tokenizer.json"):
        write_container(tmp_path / "m.edgec", meta, sample_tensors())
    with pytest.raises(EdgecError, match="'Bad Key'"):
        write_container(tmp_path / "m.edgec", {**METADATA, "Bad Key": 1}, sample_tensors())
    with pytest.raises(EdgecError, match="'general.name' must be STRING"):
        write_container(tmp_path / "m.edgec", {**METADATA, "general.name": 3}, sample_tensors())
    assert list(tmp_path.iterdir()) == []


def test_unknown_metadata_keys_are_read_and_ignored(tmp_path):
    out = tmp_path / "m.edgec"
    write_container(out, {**METADATA, "vendor.future_key": {"x": [1, 2]}}, sample_tensors())
    with open_container(out) as f:
        assert f.metadata["vendor.future_key"] == {"x": [1, 2]}


def test_opening_a_missing_path_or_a_directory_names_it(tmp_path):
    with pytest.raises(ContainerError, match="no such file"):
        open_container(tmp_path / "absent.edgec")
    with pytest.raises(ContainerError, match="is a directory"):
        open_container(tmp_path)
    empty = tmp_path / "empty.edgec"
    empty.write_bytes(b"")
    with pytest.raises(ContainerError, match="empty file"):
        open_container(empty)
