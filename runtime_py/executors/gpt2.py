"""GPT-2: learned absolute positions, pre-norm blocks with LayerNorm, fused q/k/v, tanh GELU, tied head.

Linear weights are read as (out, in), as `.edgec` stores them (GPT-2's Conv1D keeps the transpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.architectures import GPT2
from edgec.runtime.executors.common import Embedding, FamilyWeights, Weights, attention, gelu_tanh, layer_norm
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig


@dataclass
class GPT2Block:
    """One decoder block's weights."""

    attn_norm: tuple[np.ndarray, np.ndarray]
    qkv: object
    o: object
    mlp_norm: tuple[np.ndarray, np.ndarray]
    up: object
    down: object


class GPT2Executor:
    """forward(ids, cache) -> logits for a GPT-2 model stored in an `.edgec` file."""

    def __init__(self, config: ModelConfig, weights: Weights) -> None:
        self.config = config
        w = FamilyWeights(weights, GPT2)
        d, ff = config.hidden_size, config.intermediate_size
        self.embed: Embedding = w.embedding("embedding", (config.vocab_size, d))
        self.positions = w.vector("positions", (config.max_positions, d))
        self.blocks = [GPT2Block(w.norm("attn_norm", d, i), w.linear("qkv", (3 * d, d), i), w.linear("o", (d, d), i),
                                 w.norm("mlp_norm", d, i), w.linear("up", (ff, d), i), w.linear("down", (d, ff), i))
                       for i in range(config.layers)]
        self.norm = w.norm("final_norm", d)
        self.head = w.linear("head", (config.vocab_size, d), bias=False)

    def new_cache(self, context: int) -> KVCache:
        return KVCache(self.config.layers, context, self.config.heads, self.config.head_dim)

    def forward(self, ids: np.ndarray, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Logits (T, vocab) of the new tokens after those in `cache` (last position only unless `all_logits`)."""
        c = self.config
        t = len(ids)
        positions = cache.reserve(t)
        x = self.embed(ids) + self.positions[positions]  # (T, D)
        for layer, block in enumerate(self.blocks):
            qkv = block.qkv(layer_norm(x, *block.attn_norm, c.norm_eps)).reshape(t, 3, c.heads, c.head_dim)
            keys, values = cache.store(layer, positions, qkv[:, 1], qkv[:, 2])
            x = x + block.o(attention(qkv[:, 0], keys, values, positions.start))
            x = x + block.down(gelu_tanh(block.up(layer_norm(x, *block.mlp_norm, c.norm_eps))))
        cache.advance(t)
        return self.head(layer_norm(x if all_logits else x[-1:], *self.norm, c.norm_eps))
