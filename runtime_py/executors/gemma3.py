"""The Gemma 3 text family: LLaMA's attention and cache with Gemma's changes.

Four RMSNorms per block scaling by (1 + weight) (before and after attention, before and after the
MLP), per-head query/key norms, a GeGLU MLP, the embedding scaled by sqrt(hidden_size), attention
scores scaled by query_pre_attn_scalar**-0.5, layers that attend within a sliding window or
globally, each kind with its own rotary base, and optionally soft-capped logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.architectures import GEMMA3
from edgec.runtime.backends.base import Linear
from edgec.runtime.executors.common import Embedding, FamilyWeights, Weights, attention, gelu_tanh, rms_norm, softcap
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig
from edgec.runtime.rope import Rotary


@dataclass
class GemmaBlock:
    """One decoder block's weights; norms hold the factor they scale by (1 + the stored weight)."""

    attn_norm: np.ndarray
    q: Linear
    k: Linear
    v: Linear
    q_norm: np.ndarray
    k_norm: np.ndarray
    o: Linear
    attn_out_norm: np.ndarray
    mlp_norm: np.ndarray
    gate: Linear
    up: Linear
    down: Linear
    mlp_out_norm: np.ndarray
    rotary: Rotary
    window: int | None


class Gemma3Executor:
    """forward(ids, cache) -> logits for a Gemma 3 text decoder stored in an `.edgec` file."""

    def __init__(self, config: ModelConfig, weights: Weights, context: int) -> None:
        self.config = config
        w = FamilyWeights(weights, GEMMA3)
        d, q_dim, kv_dim, hd, ff = config.hidden_size, config.heads * config.head_dim, config.kv_dim, config.head_dim, \
            config.intermediate_size
        self.embed: Embedding = w.embedding("embedding", (config.vocab_size, d))
        full = Rotary(config, context)
        sliding = full if config.sliding_rope is None else Rotary(config, context, config.sliding_rope)
        self.blocks = []
        for i in range(config.layers):
            self.blocks.append(GemmaBlock(
                *w.norm("attn_norm", d, i),
                w.linear("q", (q_dim, d), i), w.linear("k", (kv_dim, d), i), w.linear("v", (kv_dim, d), i),
                *w.norm("q_norm", hd, i), *w.norm("k_norm", hd, i),
                w.linear("o", (d, q_dim), i),
                *w.norm("attn_out_norm", d, i), *w.norm("mlp_norm", d, i),
                w.linear("gate", (ff, d), i, bias=False), w.linear("up", (ff, d), i, bias=False),
                w.linear("down", (d, ff), i, bias=False),
                *w.norm("mlp_out_norm", d, i),
                sliding if config.is_sliding(i) else full, config.window(i)))
        (self.norm,) = w.norm("final_norm", d)
        self.head = w.linear("head", (config.vocab_size, d), bias=False)

    def new_cache(self, context: int) -> KVCache:
        return KVCache(self.config.layers, context, self.config.kv_heads, self.config.head_dim)

    def forward(self, ids: np.ndarray, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Logits (T, vocab) of the new tokens `ids` (T,) after those in `cache` (last position only unless
        `all_logits`); the new tokens' keys and values are added to the cache."""
        c = self.config
        t = len(ids)
        positions = cache.reserve(t)
        x = self.embed(ids) * np.float32(c.embedding_scale)  # (T, D)
        for layer, block in enumerate(self.blocks):
            h = rms_norm(x, block.attn_norm, c.norm_eps)
            q = rms_norm(block.q(h).reshape(t, c.heads, c.head_dim), block.q_norm, c.norm_eps)  # (T, H, hd)
            k = rms_norm(block.k(h).reshape(t, c.kv_heads, c.head_dim), block.k_norm, c.norm_eps)  # (T, KVH, hd)
            v = block.v(h).reshape(t, c.kv_heads, c.head_dim)
            q, k = block.rotary.apply(q, positions), block.rotary.apply(k, positions)
            keys, values = cache.store(layer, positions, k, v)  # (S, KVH, hd)
            attended = attention(q, keys, values, positions.start, window=block.window, scalar=c.attention_scalar)
            x = x + rms_norm(block.o(attended), block.attn_out_norm, c.norm_eps)
            h = rms_norm(x, block.mlp_norm, c.norm_eps)
            x = x + rms_norm(block.down(gelu_tanh(block.gate(h)) * block.up(h)), block.mlp_out_norm, c.norm_eps)
        cache.advance(t)
        x = rms_norm(x if all_logits else x[-1:], self.norm, c.norm_eps)
        return softcap(self.head(x), c.logit_softcap)
