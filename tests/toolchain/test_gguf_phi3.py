"""A Phi-3 GGUF file, written with the `gguf` package from a tiny Hugging Face model, loads in edgec with that
model's logits.

The file holds what llama.cpp's converter writes for Phi-3 (`gguf_files.write_gguf`): float32 tensors under
llama.cpp's names (the fused q/k/v as `attn_qkv`, the fused gate/up as `ffn_up`), the architecture's
hyperparameters, and the tokenizer as metadata.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from conftest import PHI3_VARIANTS, save_tiny_decoder
from gguf_files import write_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from edgec.models.loading import load_model


def write_phi3_gguf(model_dir: Path, path: Path) -> None:
    """The model in `model_dir` (a Phi-3 folder with a byte-level BPE tokenizer) as a float32 GGUF file."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config

    def hyperparameters(writer: gguf.GGUFWriter) -> None:
        writer.add_name("tiny-phi3")
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        head_dim = config.hidden_size // config.num_attention_heads
        writer.add_rope_dimension_count(int(head_dim * config.rope_parameters.get("partial_rotary_factor", 1.0)))
        writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
        if config.sliding_window is not None:
            writer.add_sliding_window(config.sliding_window)

    write_gguf(path, gguf.MODEL_ARCH.PHI3, model, AutoTokenizer.from_pretrained(model_dir), hyperparameters)


@pytest.mark.parametrize("variant", list(PHI3_VARIANTS))
def test_a_phi3_gguf_loads_with_the_models_logits(variant, tmp_path, monkeypatch):
    """Both variants: the window (8, shorter than the text) and the rotated share of each head (half) are
    settings transformers' GGUF loader drops; edgec restores them from the file."""
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path / "cache"))
    model_dir = save_tiny_decoder(PHI3_VARIANTS[variant](), tmp_path / "hf")
    write_phi3_gguf(model_dir, tmp_path / "tiny-phi3.gguf")

    loaded = load_model(tmp_path / "tiny-phi3.gguf")
    assert loaded.model.config.model_type == "phi3" and loaded.source == tmp_path / "tiny-phi3.gguf"
    assert [r.name for r in loaded.adapter.linears(loaded.model)][:2] == ["model.layers.0.self_attn.qkv_proj",
                                                                         "model.layers.0.self_attn.o_proj"]
    original = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    text = "It is a truth universally acknowledged, that a single man"
    ids = AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"]
    assert loaded.tokenizer(text)["input_ids"] == ids and len(ids) > 8
    assert loaded.model.config.sliding_window == original.config.sliding_window
    with torch.no_grad():
        expected = original(torch.tensor([ids])).logits
        got = loaded.model(torch.tensor([ids])).logits
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
