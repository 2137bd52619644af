"""BERT-family encoders (BERT, MiniLM): absolute positions, post-norm blocks, GELU; sentence embeddings by mean pooling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.architectures import BERT
from edgec.runtime.executors.common import Embedding, FamilyWeights, Weights, attention, gelu, layer_norm
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
        w = FamilyWeights(weights, BERT)
        if not w.stored("embedding"):  # saved from a task model: the base model's tensors under its prefix
            w = FamilyWeights(weights, BERT, f"{BERT.base}.")
        d, ff = config.hidden_size, config.intermediate_size
        self.words: Embedding = w.embedding("embedding", (config.vocab_size, d))
        self.positions = w.vector("positions", (config.max_positions, d))
        self.token_type = w.vector("token_types", (None, d))[0]
        self.embed_norm = w.norm("embedding_norm", d)
        self.blocks = [BertBlock(*(w.linear(role, (d, d), i) for role in ("q", "k", "v", "o")), w.norm("attn_norm", d, i),
                                 w.linear("up", (ff, d), i), w.linear("down", (d, ff), i), w.norm("out_norm", d, i))
                       for i in range(config.layers)]
        weights.allow(w.name("pooler"), (d, d))  # sentence embeddings mean-pool instead
        weights.allow(w.name("pooler", part="bias"), (d,))

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
