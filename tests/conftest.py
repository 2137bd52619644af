"""Shared fixtures: tiny random models saved as real Hugging Face folders, and the CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Triton kernels run in Triton's interpreter on CPU tensors (no GPU here); it must be chosen
# before Triton is first imported. The runtime's `auto` never picks the interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    BertModel,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen3Config,
)

from edgec.data import evaluation_text

TINY_VOCAB = 320
# Printed in pytest's header: CI installs the newest releases pyproject.toml allows, so its log says which ran.
REPORTED_VERSIONS = ("torch", "transformers", "kernels", "tokenizers", "numpy", "scipy", "onnx", "onnxruntime",
                     "triton", "accelerate", "gguf", "safetensors", "pydantic")


def pytest_report_header(config) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return "resolved: " + ", ".join(f"{name} {installed(name)}" for name in REPORTED_VERSIONS)


def tiny_tokenizer(bert: bool = False) -> PreTrainedTokenizerFast:
    """A 320-token byte-level BPE trained on the evaluation text."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=["<unk>", "<s>", "</s>", "[PAD]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([evaluation_text()[:50_000]], trainer)
    extra = dict(pad_token="[PAD]") if bert else dict(bos_token="<s>", eos_token="</s>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **extra)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 2-block LLaMA with a 320-token BPE tokenizer, saved as a model folder."""
    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=TINY_VOCAB, max_position_embeddings=256,
                         tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A 2-block GPT-2 (Conv1D weights stored transposed) with a BPE tokenizer, saved as a model folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=TINY_VOCAB, n_positions=256)).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-block BERT encoder with a BPE tokenizer, saved as a model folder."""
    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                        vocab_size=TINY_VOCAB, max_position_embeddings=256)
    BertModel(config).save_pretrained(path)
    tiny_tokenizer(bert=True).save_pretrained(path)
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m edgec ARGS` in a subprocess (in folder `cwd`, if given), as a user would."""
    import os

    return subprocess.run([sys.executable, "-m", "edgec", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900, cwd=cwd)


def cli_json(*args: str, env: dict | None = None) -> dict:
    """Run the CLI with --json and parse its stdout, failing with its stderr on error."""
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


_FAMILY_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=TINY_VOCAB, max_position_embeddings=256, tie_word_embeddings=True)
LLAMA_FAMILIES = {
    "llama": lambda: LlamaConfig(**_FAMILY_SIZES),
    "mistral": lambda: MistralConfig(**_FAMILY_SIZES, sliding_window=8),
    "qwen2": lambda: Qwen2Config(**_FAMILY_SIZES),
    "qwen3": lambda: Qwen3Config(**_FAMILY_SIZES, head_dim=16),
}


# Phi-3's tiny models: full rotary with a window of 8, and rotary on half of each head (Phi-4-mini rotates 3/4).
_PHI3_SIZES = dict(_FAMILY_SIZES, bos_token_id=1, eos_token_id=2, pad_token_id=3)
PHI3_VARIANTS = {
    "phi3": lambda: Phi3Config(**_PHI3_SIZES, sliding_window=8),
    "phi3-partial": lambda: Phi3Config(**_PHI3_SIZES, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                       "partial_rotary_factor": 0.5}),
}
def tiny_gemma3_config() -> Gemma3TextConfig:
    """A 4-layer Gemma 3 text config: sliding (window 4) and global layers, each kind with its own rotary base
    (the global one linearly scaled), query_pre_attn_scalar other than head_dim, soft-capped logits."""
    return Gemma3TextConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, vocab_size=TINY_VOCAB, max_position_embeddings=256, sliding_window=4, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 2.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
        final_logit_softcapping=3.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def randomize_norms(model: torch.nn.Module) -> None:
    """Random norm weights and biases: their defaults (ones, zeros) would hide a bug."""
    offset = 0 if model.config.model_type == "gemma3_text" else 1  # Gemma's norms scale by 1 + weight
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.5 + (0 if name.endswith("bias") else offset))


# The config of the tiny model of each model type built from a config (not a saved folder's).
TINY_CONFIGS = {**LLAMA_FAMILIES, "phi3": PHI3_VARIANTS["phi3-partial"], "gemma3_text": tiny_gemma3_config}


def save_tiny_decoder(config, path: Path) -> Path:
    """A random model of `config` with random biases and norm weights (`randomize_norms`), saved with the
    tiny tokenizer in folder `path`."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    randomize_norms(model)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session", params=list(LLAMA_FAMILIES))
def family_dir(request, tmp_path_factory):
    """A tiny model of each LLaMA-family variant (LLaMA; Mistral with a window of 8; Qwen2, q/k/v biases;
    Qwen3, q/k norms) whose biases and norm weights are random."""
    return save_tiny_decoder(LLAMA_FAMILIES[request.param](), tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="session", params=list(PHI3_VARIANTS))
def phi3_dir(request, tmp_path_factory):
    """A tiny Phi-3 of each variant of PHI3_VARIANTS, with random norm weights."""
    return save_tiny_decoder(PHI3_VARIANTS[request.param](), tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="session")
def tiny_phi3_dir(tmp_path_factory):
    """The tiny Phi-3 rotating half of each head, with random norm weights."""
    return save_tiny_decoder(PHI3_VARIANTS["phi3-partial"](), tmp_path_factory.mktemp("tiny-phi3"))


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory) -> Path:
    """A 4-layer Gemma 3 text model (`tiny_gemma3_config`) with random norms and a BPE tokenizer, saved as a folder."""
    return save_tiny_decoder(tiny_gemma3_config(), tmp_path_factory.mktemp("tiny-gemma3"))
