"""A tiny synthetic two-block LLaMA-shaped model as `.edgec` tensors and metadata, built from numpy alone.

It touches every format family, a partial quantization group, 1-D tensors, the
extra buffers and a tied-weight alias, with fixed metadata, so the file it makes is
the same byte for byte on every run: `golden/tiny.edgec` is this file
(`python tests/exporters/container_samples.py` rewrites it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgec.core.formats import parse_format
from edgec.exporters.edgec_writer import TensorToWrite, write_container

GOLDEN = Path(__file__).parent / "golden" / "tiny.edgec"
HIDDEN, INTERMEDIATE, VOCAB, HEADS, KV_HEADS = 64, 128, 96, 4, 2
HEAD_DIM = HIDDEN // HEADS

LAYER_FORMATS = {
    "model.layers.0.self_attn.q_proj": "int4:g32",
    "model.layers.0.self_attn.k_proj": "int4:g32:asym",
    "model.layers.0.self_attn.v_proj": "int3:g32",
    "model.layers.0.self_attn.o_proj": "int8",
    "model.layers.0.mlp.gate_proj": "nf4:g32",
    "model.layers.0.mlp.up_proj": "fp8",
    "model.layers.0.mlp.down_proj": "2:4+int4:g32",
    "model.layers.1.self_attn.q_proj": "bf16",
    "model.layers.1.self_attn.k_proj": "2:4",
    "model.layers.1.self_attn.v_proj": "int2:g32",
    "model.layers.1.self_attn.o_proj": "int4:g128",  # K = 64: one partial group per row
    "model.layers.1.mlp.gate_proj": "2:4+int8",
    "model.layers.1.mlp.up_proj": "int4:g64:asym",
    "model.layers.1.mlp.down_proj": "fp16",
}
EXTRAS = {"model.layers.0.self_attn.o_proj": ("input_scale", "act_scale")}

TOKENIZER_JSON = json.dumps({
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
    "model": {"type": "WordLevel", "vocab": {f"w{i}": i for i in range(VOCAB)}, "unk_token": "w0"},
})
METADATA = {
    "general.architecture": "llama",
    "general.name": "tiny-synthetic",
    "general.task": "causal-lm",
    "model.config": {"model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTERMEDIATE,
                     "num_hidden_layers": 2, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
                     "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0}},
    "tokenizer.json": TOKENIZER_JSON,
    "tokenizer.config": {"unk_token": "w0", "model_max_length": 256},
    "edgec.layers": {name: {"format": fmt, "method": "rtn", "sparsity": 0.0} for name, fmt in LAYER_FORMATS.items()},
    "edgec.plan": None,
    "edgec.aliases": {"lm_head.weight": "model.embed_tokens.weight"},
    "provenance.edgec_version": "0.1.0",
    "provenance.created": "2026-01-01T00:00:00Z",
    "provenance.source_name": "tiny-synthetic",
    "provenance.source_sha256": "0" * 64,
    "provenance.calibration": None,
    "sample.flag": True,
    "sample.count": -3,
    "sample.ratio": 0.25,
}


def linear_shape(name: str) -> tuple[int, int]:
    """(N, K) of a linear of the sample model."""
    leaf = name.rsplit(".", 1)[1]
    return {"q_proj": (HIDDEN, HIDDEN), "k_proj": (KV_HEADS * HEAD_DIM, HIDDEN), "v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
            "o_proj": (HIDDEN, HIDDEN), "gate_proj": (INTERMEDIATE, HIDDEN), "up_proj": (INTERMEDIATE, HIDDEN),
            "down_proj": (HIDDEN, INTERMEDIATE)}[leaf]


def float_values() -> dict[str, np.ndarray]:
    """Every tensor's float32 values, in state-dict order, drawn from a fixed seed."""
    rng = np.random.default_rng(20261123)
    values = {"model.embed_tokens.weight": rng.normal(0, 0.02, (VOCAB, HIDDEN)).astype(np.float32)}
    for block in range(2):
        prefix = f"model.layers.{block}."
        for name in LAYER_FORMATS:
            if name.startswith(prefix):
                values[name + ".weight"] = rng.normal(0, 0.05, linear_shape(name)).astype(np.float32)
        values[prefix + "input_layernorm.weight"] = (1 + rng.normal(0, 0.1, HIDDEN)).astype(np.float32)
        values[prefix + "post_attention_layernorm.weight"] = (1 + rng.normal(0, 0.1, HIDDEN)).astype(np.float32)
    values["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    return values


def extra_values(name: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """The extra buffers of a layer that has them (fixed, exactly representable values)."""
    extras = EXTRAS.get(name, ())
    out = {}
    if "input_scale" in extras:
        out["input_scale"] = np.linspace(0.5, 2.0, shape[1], dtype=np.float32)
    if "act_scale" in extras:
        out["act_scale"] = np.array([0.125], np.float32)
    return out


def sample_tensors() -> list[TensorToWrite]:
    """The sample model's tensors, each quantized from `float_values()` when the writer reaches it."""
    tensors = []
    for name, values in float_values().items():
        layer = name.removesuffix(".weight")
        fmt = parse_format(LAYER_FORMATS.get(layer, "fp16"))

        def produce(fmt=fmt, values=values, layer=layer) -> dict[str, np.ndarray]:
            return {**fmt.quantize(values), **extra_values(layer, values.shape)}

        tensors.append(TensorToWrite(name, fmt, values.shape, produce, EXTRAS.get(layer, ())))
    return tensors


def write_sample(path: Path) -> None:
    """Write the sample model's `.edgec` file to `path`."""
    write_container(path, METADATA, sample_tensors())


if __name__ == "__main__":
    GOLDEN.unlink(missing_ok=True)
    write_sample(GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")
