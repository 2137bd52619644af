"""Files whose checksums are right but whose contents do not fit together: every entry point refuses the same ones.

The byte-level tests (test_edgec_hostile.py) patch bytes; these write whole files through the
writer, so every checksum is right, with the typed metadata or the tensor table changed: config
figures, the task, cross-references between config, `edgec.layers` and tensors, tensor shapes,
missing and extra tensors. For each file, `inspect` (the command's own check), `load` + one
forward and generation (what `edgec run` does) must agree: all accept it, or all refuse it with a
ContainerError that names the file, and nothing else escapes.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from conftest import run_cli
from container_samples import HIDDEN, METADATA, sample_tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edgec_hostile import key_position, patched

from edgec.commands.inspect_command import _inspect_edgec
from edgec.core.errors import ContainerError
from edgec.core.formats import parse_format
from edgec.exporters.edgec_writer import TensorToWrite, write_container
from edgec.runtime import load

Q_PROJ = "model.layers.0.self_attn.q_proj.weight"
NORM = "model.layers.1.input_layernorm.weight"


def _with_values(tensors: list[TensorToWrite], name: str, shape: tuple[int, ...]) -> list[TensorToWrite]:
    """`tensors` with `name` stored in its own format at another shape (valid buffers, so only the shape is wrong)."""
    values = np.random.default_rng(0).normal(0, 0.05, shape).astype(np.float32)
    return [TensorToWrite(name, t.format, shape, lambda fmt=t.format: fmt.quantize(values)) if t.name == name else t
            for t in tensors]


def _write(path, metadata: dict, tensors: list[TensorToWrite] | None = None):
    write_container(path, metadata, tensors if tensors is not None else sample_tensors())
    return path


def _config(**change) -> dict:
    metadata = copy.deepcopy(METADATA)
    metadata["model.config"].update(change)
    return metadata


def _metadata(**change) -> dict:
    return {**copy.deepcopy(METADATA), **{k.replace("__", "."): v for k, v in change.items()}}


def _verdicts(path) -> dict[str, str | None]:
    """Each entry point's verdict on the file: None (accepted) or its ContainerError's message."""
    out: dict[str, str | None] = {}
    try:
        out["inspect"] = _inspect_edgec(path, verify=True)["error"]
    except ContainerError as exc:
        out["inspect"] = str(exc)
    try:
        model = load(path, backend="reference")
        model.forward([1])
        out["load+forward"] = None
        list(model.generate("w1", max_new_tokens=1))
        out["run"] = None
    except ContainerError as exc:
        out.setdefault("load+forward", str(exc))
        out["run"] = str(exc)
    return out


def _agree(path) -> str | None:
    verdicts = _verdicts(path)
    refused = {k: v is not None for k, v in verdicts.items()}
    assert len(set(refused.values())) == 1, verdicts
    message = verdicts["inspect"]
    assert message is None or str(path) in message, message
    return message


CASES = {
    "num_attention_heads 0": (lambda: _config(num_attention_heads=0), "attention heads|wrong kind"),
    "num_attention_heads 7": (lambda: _config(num_attention_heads=7), "divide"),
    "num_key_value_heads 0": (lambda: _config(num_key_value_heads=0), "kv_heads"),
    "hidden_size 999": (lambda: _config(hidden_size=999), "divide|shape"),
    "hidden_size negative": (lambda: _config(hidden_size=-HIDDEN), "hidden_size"),
    "max_position_embeddings 0": (lambda: _config(max_position_embeddings=0), "max_positions"),
    "num_hidden_layers 99": (lambda: _config(num_hidden_layers=99), "model.layers.2.* is missing"),
    "num_hidden_layers 1 of 2": (lambda: _config(num_hidden_layers=1), "model.layers.1.*is no part of the 1-layer"),
    "rms_norm_eps a string": (lambda: _config(rms_norm_eps="small"), "epsilon"),
    "vocab_size one short": (lambda: _config(vocab_size=95), "embed_tokens.*shape"),
    "vocab_size 99,999": (lambda: _config(vocab_size=99_999), "embed_tokens.*shape"),
    "model.config a list": (lambda: _metadata(model__config=[]), "'model.config' should be a JSON object"),
    "general.task dance": (lambda: _metadata(general__task="dance"), "general.task"),
    "general.task encoder on a LLaMA": (lambda: _metadata(general__task="encoder"), "general.task"),
    "general.architecture t5": (lambda: _metadata(general__architecture="t5"), "'t5' is not one the runtime runs"),
    "edgec.layers names int5": (lambda: _metadata(edgec__layers={**METADATA["edgec.layers"],
                                                                 "model.layers.0.self_attn.q_proj": {"format": "int5:g128"}}),
                                "edgec.layers"),
    "edgec.layers names a missing layer": (lambda: _metadata(edgec__layers={"model.layers.9.mlp.up_proj": {"format": "int8"}}),
                                           "edgec.layers"),
    "edgec.plan a list": (lambda: _metadata(edgec__plan=["x"]), "edgec.plan"),
    "tokenizer.config not an object": (lambda: _metadata(tokenizer__config=["x"]), "tokenizer.config"),
}


@pytest.mark.parametrize("case", CASES)
def test_inconsistent_metadata_is_refused_by_every_entry_point(tmp_path, case):
    make, expected = CASES[case]
    message = _agree(_write(tmp_path / "m.edgec", make()))
    assert message is not None and re.search(expected, message), message


@pytest.mark.parametrize("case, change, expected", [
    ("q_proj declared (80, 64)", lambda ts: _with_values(ts, Q_PROJ, (HIDDEN + 16, HIDDEN)), "q_proj.*shape"),
    ("a norm of 63", lambda ts: _with_values(ts, NORM, (HIDDEN - 1,)), "input_layernorm.*shape"),
    ("a tensor missing", lambda ts: [t for t in ts if t.name != NORM], "input_layernorm.weight' is missing"),
    ("an extra tensor", lambda ts: _with_values(ts, NORM, (HIDDEN,)) + [
        TensorToWrite("model.layers.5.extra.weight", parse_format("fp16"), (4,), lambda: {"values": np.zeros(4, np.float16)})],
     "model.layers.5.extra.weight' is no part"),
])
def test_inconsistent_tensors_are_refused_by_every_entry_point(tmp_path, case, change, expected):
    message = _agree(_write(tmp_path / "m.edgec", copy.deepcopy(METADATA), change(sample_tensors())))
    assert message is not None and re.search(expected, message), message


def test_the_sample_itself_is_accepted_by_every_entry_point(tmp_path):
    assert _agree(_write(tmp_path / "m.edgec", copy.deepcopy(METADATA))) is None


def test_invalid_utf8_in_a_string_is_refused_at_open_by_every_entry_point(tmp_path):
    path = tmp_path / "m.edgec"
    start = key_position("general.name") + 2 + len("general.name") + 1 + 8  # the value's first byte
    path.write_bytes(bytes(patched(start, "B", 0xFF)))
    assert "'general.name': not valid UTF-8" in _agree(path)


def test_the_cli_refuses_them_in_one_line(tmp_path):
    path = _write(tmp_path / "m.edgec", _config(num_hidden_layers=1))
    for args in (["run", str(path), "-p", "w1", "-n", "2"], ["inspect", str(path)], ["bench", str(path), "--gen", "2"]):
        done = run_cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgec: error: "), done.stderr
        assert "is no part of the 1-layer llama model" in lines[0]


CONFIG_KEYS = sorted(METADATA["model.config"])
ODD_VALUES = st.sampled_from([0, -1, 1, 2, 3, 7, 63, 65, 2**40, 1e-30, 1.5, "x", None, True, [], {}])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(CONFIG_KEYS + ["head_dim", "hidden_act", "max_position_embeddings"]),
                               ODD_VALUES, min_size=1, max_size=3))
def test_fuzzed_configs_get_one_verdict_from_every_entry_point(tmp_path, changes):
    _agree(_write(tmp_path / "m.edgec", _config(**changes)))
