"""Phi-3 (Phi-3, Phi-3.5, Phi-4-mini): the LLaMA family's computation over fused projections.

q/k/v are one linear (rows: queries, keys, values) and gate/up another (rows: gate, then up); rotary
positions may cover only a share of each head (`partial_rotary_factor`, which `Rotary` reads). No
backend lists "phi3" among its fused families (their passes compute separate projections), so Phi-3
always runs the executor's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.architectures import PHI3
from edgec.runtime.executors.common import FamilyWeights
from edgec.runtime.executors.llama import LlamaExecutor


@dataclass
class Phi3Block:
    """One decoder block's weights."""

    attn_norm: np.ndarray
    qkv: object
    o: object
    mlp_norm: np.ndarray
    gate_up: object
    down: object


class Phi3Executor(LlamaExecutor):
    """forward(ids, cache) -> logits for a Phi-3 decoder stored in an `.edgec` file."""

    arch = PHI3

    def _block(self, w: FamilyWeights, i: int) -> Phi3Block:
        c = self.config
        d, q_dim, ff = c.hidden_size, c.heads * c.head_dim, c.intermediate_size
        return Phi3Block(
            w.vector("attn_norm", (d,), i), w.linear("qkv", (q_dim + 2 * c.kv_dim, d), i, bias=False),
            w.linear("o", (d, q_dim), i, bias=False),
            w.vector("mlp_norm", (d,), i), w.linear("gate_up", (2 * ff, d), i, bias=False),
            w.linear("down", (d, ff), i, bias=False))

    def _qkv(self, block: Phi3Block, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        qkv = block.qkv(h)
        q_dim = c.heads * c.head_dim
        q = qkv[:, :q_dim].reshape(len(h), c.heads, c.head_dim)
        k, v = (qkv[:, start:start + c.kv_dim].reshape(len(h), c.kv_heads, c.head_dim)
                for start in (q_dim, q_dim + c.kv_dim))
        return q, k, v

    def _gate_up(self, block: Phi3Block, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gate_up = block.gate_up(h)
        ff = self.config.intermediate_size
        return gate_up[:, :ff], gate_up[:, ff:]
