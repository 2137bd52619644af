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
        self.words: Embedding = weights.embedding(prefix + "word_embeddings.weight")
        self.positions = weights.vector(prefix + "position_embeddings.weight")
        self.token_type = weights.vector(prefix + "token_type_embeddings.weight")[0]
        self.embed_norm = self._norm(weights, prefix + "LayerNorm")
        self.blocks = []
        for i in range(config.layers):
            p = f"{root}encoder.layer.{i}."
            att = p + "attention."
            self.blocks.append(BertBlock(
                *(weights.linear(f"{att}self.{n}.weight", f"{att}self.{n}.bias") for n in ("query", "key", "value")),
                weights.linear(att + "output.dense.weight", att + "output.dense.bias"),
                self._norm(weights, att + "output.LayerNorm"),
                weights.linear(p + "intermediate.dense.weight", p + "intermediate.dense.bias"),
                weights.linear(p + "output.dense.weight", p + "output.dense.bias"),
                self._norm(weights, p + "output.LayerNorm")))

    @staticmethod
    def _norm(weights: Weights, name: str) -> tuple[np.ndarray, np.ndarray]:
        return weights.vector(name + ".weight"), weights.vector(name + ".bias")

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
