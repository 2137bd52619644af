"""GPT-2: learned absolute positions, pre-norm blocks with LayerNorm, fused q/k/v, tanh GELU, tied head.

Linear weights are read as (out, in), as `.edgec` stores them (GPT-2's Conv1D keeps the transpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.runtime.executors.common import Embedding, Weights, attention, gelu_tanh, layer_norm
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
        d, ff = config.hidden_size, config.intermediate_size
        self.embed: Embedding = weights.embedding("transformer.wte.weight", (config.vocab_size, d))
        self.positions = weights.vector("transformer.wpe.weight", (config.max_positions, d))
        self.blocks = []
        for i in range(config.layers):
            p = f"transformer.h.{i}."
            self.blocks.append(GPT2Block(
                self._norm(weights, p + "ln_1", d),
                weights.linear(p + "attn.c_attn.weight", (3 * d, d), p + "attn.c_attn.bias"),
                weights.linear(p + "attn.c_proj.weight", (d, d), p + "attn.c_proj.bias"),
                self._norm(weights, p + "ln_2", d),
                weights.linear(p + "mlp.c_fc.weight", (ff, d), p + "mlp.c_fc.bias"),
                weights.linear(p + "mlp.c_proj.weight", (d, ff), p + "mlp.c_proj.bias")))
        self.norm = self._norm(weights, "transformer.ln_f", d)
        self.head = weights.linear("lm_head.weight", (config.vocab_size, d))

    @staticmethod
    def _norm(weights: Weights, name: str, d: int) -> tuple[np.ndarray, np.ndarray]:
        return weights.vector(name + ".weight", (d,)), weights.vector(name + ".bias", (d,))

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
