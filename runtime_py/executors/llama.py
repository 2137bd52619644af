"""The LLaMA family (LLaMA, SmolLM2, Mistral, Qwen2/3): RMSNorm, rotary positions, grouped-query attention, SwiGLU.

One sequence at a time; keys and values go to a preallocated `KVCache`. Families with this structure
but other projections (Phi-3 fuses q/k/v and gate/up) subclass the executor and replace `_block`,
`_qkv` and `_gate_up`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.architectures import LLAMA, Architecture
from edgec.runtime.executors.common import Embedding, FamilyWeights, Weights, attention, rms_norm, silu
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig
from edgec.runtime.rope import Rotary


@dataclass
class LlamaBlock:
    """One decoder block's weights."""

    attn_norm: np.ndarray
    q: object
    k: object
    v: object
    o: object
    mlp_norm: np.ndarray
    gate: object
    up: object
    down: object
    q_norm: np.ndarray | None = None  # Qwen3 normalises queries and keys per head
    k_norm: np.ndarray | None = None


class LlamaExecutor:
    """forward(ids, cache) -> logits for a LLaMA-family decoder stored in an `.edgec` file."""

    arch: Architecture = LLAMA

    def __init__(self, config: ModelConfig, weights: Weights, context: int) -> None:
        self.config = config
        w = FamilyWeights(weights, self.arch)
        d = config.hidden_size
        self.embed: Embedding = w.embedding("embedding", (config.vocab_size, d))
        self.blocks = [self._block(w, i) for i in range(config.layers)]
        self.norm = w.vector("final_norm", (d,))
        self.head = w.linear("head", (config.vocab_size, d), bias=False)
        self.rotary = Rotary(config, context)
        self.fused = self._fused_pass(weights)

    def _block(self, w: FamilyWeights, i: int) -> LlamaBlock:
        """Block i's weights, with the shapes the config implies."""
        c = self.config
        d, q_dim, kv_dim, hd, ff = c.hidden_size, c.heads * c.head_dim, c.kv_dim, c.head_dim, c.intermediate_size
        return LlamaBlock(
            w.vector("attn_norm", (d,), i),
            w.linear("q", (q_dim, d), i), w.linear("k", (kv_dim, d), i), w.linear("v", (kv_dim, d), i),
            w.linear("o", (d, q_dim), i),
            w.vector("mlp_norm", (d,), i),
            w.linear("gate", (ff, d), i, bias=False), w.linear("up", (ff, d), i, bias=False),
            w.linear("down", (d, ff), i, bias=False),
            *(w.vector(role, (hd,), i) if w.stored(role, i) else None for role in ("q_norm", "k_norm")))

    def _fused_pass(self, weights: Weights):
        """The backend's own whole-pass implementation, if it has one for these layers (its passes rotate
        whole heads)."""
        if self.rotary.dims != self.config.head_dim:
            return None
        return weights.backend.fused_pass(self.arch.family, self.config, self.blocks, self.norm, self.head, self.rotary)

    def _qkv(self, block: LlamaBlock, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Queries (T, H, hd), keys and values (T, KVH, hd) of the normed input h (T, D), before rotation."""
        c, t = self.config, len(h)
        q = block.q(h).reshape(t, c.heads, c.head_dim)
        k = block.k(h).reshape(t, c.kv_heads, c.head_dim)
        v = block.v(h).reshape(t, c.kv_heads, c.head_dim)
        if block.q_norm is not None:
            q, k = rms_norm(q, block.q_norm, c.norm_eps), rms_norm(k, block.k_norm, c.norm_eps)
        return q, k, v

    def _gate_up(self, block: LlamaBlock, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The MLP's gate and up projections (T, ff) of the normed input h (T, D)."""
        return block.gate(h), block.up(h)

    def new_cache(self, context: int) -> KVCache:
        return KVCache(self.config.layers, context, self.config.kv_heads, self.config.head_dim)

    def forward(self, ids: np.ndarray, cache: KVCache, all_logits: bool = False) -> np.ndarray:
        """Logits (T, vocab) of the new tokens `ids` (T,) after those in `cache` (last position only unless
        `all_logits`); the new tokens' keys and values are added to the cache."""
        c = self.config
        t = len(ids)
        positions = cache.reserve(t)
        x = self.embed(ids)  # (T, D)
        if self.fused is not None:
            logits = self.fused(x, cache, positions.start, all_logits)
            cache.advance(t)
            return logits
        for layer, block in enumerate(self.blocks):
            q, k, v = self._qkv(block, rms_norm(x, block.attn_norm, c.norm_eps))
            q, k = self.rotary.apply(q, positions), self.rotary.apply(k, positions)
            keys, values = cache.store(layer, positions, k, v)  # (S, KVH, hd)
            x = x + block.o(attention(q, keys, values, positions.start, window=c.sliding_window))
            gate, up = self._gate_up(block, rms_norm(x, block.mlp_norm, c.norm_eps))
            x = x + block.down(silu(gate) * up)
        cache.advance(t)
        x = rms_norm(x if all_logits else x[-1:], self.norm, c.norm_eps)
        return self.head(x)
