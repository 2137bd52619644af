"""The cpu backend's fused LLaMA-family decoder: a whole forward pass in one call to the compiled kernels.

At one token per pass a small model's layers each take microseconds, and the Python between
them (a norm, a rotation, an attention, a residual add, seven projection calls per block)
took as long again. `kernels/cpu/decoder.c` runs the same steps with the same projection
kernels and no interpreter in between. It is used when every projection is a plain cpu
kernel; layers with an input scale (SmoothQuant/AWQ folding kept apart) or quantized
activations take the executor's Python path, which handles everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgec.runtime.backends.base import Linear
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig
from edgec.runtime.rope import Rotary


def _handle(linear: Linear, bias_allowed: bool = True):
    """The prepared weight behind a plain cpu `Linear`, or None if the fused pass cannot run it."""
    prepared = getattr(linear.kernel, "prepared", None)
    if prepared is None or linear.input_scale is not None or linear.act_scale is not None:
        return None
    if linear.bias is not None and not bias_allowed:
        return None
    return prepared.handle


class FusedLlama:
    """forward(x, cache, start, all_logits) -> logits, for the embeddings x (T, dim) of new tokens."""

    def __init__(self, decoder, vocab: int, mode: int) -> None:
        self._decoder, self._vocab, self._mode = decoder, vocab, mode

    @classmethod
    def build(cls, config: ModelConfig, blocks: Sequence, norm: np.ndarray, head: Linear, rotary: Rotary,
              accuracy: str) -> FusedLlama | None:
        """The fused pass over an executor's blocks, or None if some projection needs the Python path."""
        from edgec.kernels.cpu.extension import extension
        from edgec.kernels.cpu.matmul import MODES

        rows = []
        for b in blocks:
            handles = [_handle(p) for p in (b.q, b.k, b.v, b.o)] + [_handle(p, False) for p in (b.gate, b.up, b.down)]
            if any(h is None for h in handles):
                return None
            q, k, v, o, gate, up, down = handles
            rows.append((b.attn_norm, q, b.q.bias, k, b.k.bias, v, b.v.bias, o, b.o.bias, b.mlp_norm,
                         gate, up, down, b.q_norm, b.k_norm))
        head_handle = _handle(head, False)
        if head_handle is None:
            return None
        sizes = (config.hidden_size, config.heads, config.kv_heads, config.head_dim, config.intermediate_size,
                 config.sliding_window or 0, len(rotary.cos))
        decoder = extension().Decoder(sizes, config.norm_eps, rows, norm, head_handle, rotary.cos, rotary.sin)
        return cls(decoder, head.kernel.prepared.shape[0], MODES[accuracy])

    def __call__(self, x: np.ndarray, cache: KVCache, start: int, all_logits: bool) -> np.ndarray:
        x = np.array(x, dtype=np.float32, order="C")  # the pass overwrites it (the residual stream)
        logits = np.empty((len(x) if all_logits else 1, self._vocab), np.float32)
        self._decoder.forward(x, cache.key_array, cache.value_array, start, logits, all_logits, self._mode)
        return logits
