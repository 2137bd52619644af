"""The two real models that install offline, end to end. Marked slow: few, but run in CI."""

import pytest
import torch
from conftest import cli_json
from transformers import AutoModelForCausalLM

from edgec.models.embedded import EMBEDDED
from edgec.models.gguf_cache import cached_checkpoint
from edgec.models.hashing import weights_sha256
from edgec.models.loading import load_model

pytestmark = pytest.mark.slow


def test_gguf_conversion_matches_transformers_gguf_loading(tmp_path, monkeypatch):
    """The cached float checkpoint computes exactly what transformers' own GGUF loading does."""
    monkeypatch.setenv("EDGEC_CACHE_DIR", str(tmp_path))
    gguf = EMBEDDED["smollm2"].path()
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()
    loaded = load_model()
    assert cached_checkpoint(gguf, weights_sha256(gguf)).parent.parent == tmp_path
    assert loaded.name == "SmolLM2-135M-Instruct" and loaded.weights_hash == weights_sha256(gguf)
    assert loaded.model.config.rope_parameters["rope_theta"] == 100000.0
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.model.embed_tokens.weight.data_ptr()
    ids = loaded.tokenizer("It is a truth universally acknowledged, that a single man", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, direct(ids).logits)
    assert load_model().weights_hash == loaded.weights_hash  # second load reads the cache


def test_smollm2_asym_g32_is_lossless_and_int4_g128_is_not():
    """SmolLM2's linears are on a Q4_1 grid: int4:g32:asym reproduces it; int4:g128 loses."""
    args = ("--seq-len", "256", "--max-tokens", "2048")
    grid = cli_json("eval", "--format", "int4:g32:asym", *args)
    lossy = cli_json("eval", "--format", "int4:g128", *args)
    assert grid["model"] == "SmolLM2-135M-Instruct" and grid["lm"]["predictions"] == 8 * 255
    assert 10 < grid["lm"]["perplexity_original"] < 60
    assert grid["lm"]["kl_mean"] < 1e-3 and grid["lm"]["top1_agreement"] > 0.99
    assert lossy["lm"]["kl_mean"] > 50 * grid["lm"]["kl_mean"]
    assert lossy["lm"]["perplexity_compressed"] > lossy["lm"]["perplexity_original"]
    assert lossy["bytes_compressed"] < grid["bytes_compressed"] < grid["bytes_original"]


def test_minilm_encoder_keeps_its_embeddings_in_int8_and_loses_some_in_int2():
    int8 = cli_json("eval", "--model", "minilm", "--format", "int8", "--sentences", "128")
    int2 = cli_json("eval", "--model", "minilm", "--format", "int2:g32", "--sentences", "128")
    assert int8["task"] == "encoder" and int8["encoder"]["sentences"] == 128
    assert int8["encoder"]["mean_cosine"] > 0.995
    assert int2["encoder"]["mean_cosine"] < int8["encoder"]["mean_cosine"]
