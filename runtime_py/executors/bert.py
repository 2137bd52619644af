"""BERT-family encoders (BERT, MiniLM): absolute positions, post-norm blocks, GELU; sentence embeddings by mean pooling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.runtime.executors.common import Embedding, Weights, attention, gelu, layer_norm
from edgec.runtime.model_config import ModelConfig


@dataclass
class BertBlock:
    """One encoder block's weights."""

    q: object
    k: object
    v: object
    o: object
    attn_norm: tuple[np.ndarray, np.ndarray]
    up: object
    down: object
    out_norm: tuple[np.ndarray, np.ndarray]


class BertExecutor:
    """hidden_states(ids) -> (T, hidden) for a BERT encoder stored in an `.edgec` file."""

    def __init__(self, config: ModelConfig, weights: Weights) -> None:
        self.config = config
        prefix = "embeddings." if "embeddings.word_embeddings.weight" in weights.file.tensors else "bert.embeddings."
        root = prefix[: -len("embeddings.")]
        d, ff = config.hidden_size, config.intermediate_size
        self.words: Embedding = weights.embedding(prefix + "word_embeddings.weight", (config.vocab_size, d))
        self.positions = weights.vector(prefix + "position_embeddings.weight", (config.max_positions, d))
        self.token_type = weights.vector(prefix + "token_type_embeddings.weight", (None, d))[0]
        self.embed_norm = self._norm(weights, prefix + "LayerNorm", d)
        self.blocks = []
        for i in range(config.layers):
            p = f"{root}encoder.layer.{i}."
            att = p + "attention."
            self.blocks.append(BertBlock(
                *(weights.linear(f"{att}self.{n}.weight", (d, d), f"{att}self.{n}.bias") for n in ("query", "key", "value")),
                weights.linear(att + "output.dense.weight", (d, d), att + "output.dense.bias"),
                self._norm(weights, att + "output.LayerNorm", d),
                weights.linear(p + "intermediate.dense.weight", (ff, d), p + "intermediate.dense.bias"),
                weights.linear(p + "output.dense.weight", (d, ff), p + "output.dense.bias"),
                self._norm(weights, p + "output.LayerNorm", d)))
        weights.allow(root + "pooler.dense.weight", (d, d))  # sentence embeddings mean-pool instead
        weights.allow(root + "pooler.dense.bias", (d,))

    @staticmethod
    def _norm(weights: Weights, name: str, d: int) -> tuple[np.ndarray, np.ndarray]:
        return weights.vector(name + ".weight", (d,)), weights.vector(name + ".bias", (d,))

    def hidden_states(self, ids: np.ndarray) -> np.ndarray:
        """The last layer's hidden states (T, hidden) of one unpadded sequence."""
        c = self.config
        t = len(ids)
        x = layer_norm(self.words(ids) + self.positions[:t] + self.token_type, *self.embed_norm, c.norm_eps)
        for block in self.blocks:
            q = block.q(x).reshape(t, c.heads, c.head_dim)
            k = block.k(x).reshape(t, c.heads, c.head_dim)
            v = block.v(x).reshape(t, c.heads, c.head_dim)
            x = layer_norm(x + block.o(attention(q, k, v, 0, causal=False)), *block.attn_norm, c.norm_eps)
            x = layer_norm(x + block.down(gelu(block.up(x))), *block.out_norm, c.norm_eps)
        return x
