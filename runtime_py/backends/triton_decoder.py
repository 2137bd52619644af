"""The triton backend's LLaMA-family pass on the device: activations and the KV cache never leave it.

Between the linear layers (the Triton kernels of `edgec.kernels.triton`) run the Triton kernels
of `edgec.kernels.triton.ops` (RMSNorm, rotary, attention, SwiGLU); residual adds are torch ops
on the device. The cache's keys and values live in device tensors that this pass owns, one pair
per `KVCache` the runtime passes (made on its first use, freed with it), so the host arrays of
that cache stay untouched.
Input scales (activation-aware scaling kept apart) divide the activation on the device, and
static activation scales (W8A8) round it to the layer's 8-bit grid there (int8, or fp8 e4m3fn
through torch's cast, which rounds as the format library does), before the weight-only kernel.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from edgec.core.formats.fp8 import FP8
from edgec.runtime.backends.base import Linear
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig
from edgec.runtime.rope import Rotary


def _on_device(linear: Linear) -> bool:
    return getattr(linear.kernel, "weight", None) is not None


class _Projection:
    """One linear layer on the device: its weight, and what `Linear` does around the kernel."""

    def __init__(self, linear: Linear, dev) -> None:
        self.weight, self.bias, self.input_scale = linear.kernel.weight, dev(linear.bias), dev(linear.input_scale)
        self.act_scale, self.fp8 = linear.act_scale, isinstance(linear.act_format, FP8)

    def __call__(self, h):
        import torch

        from edgec.kernels.triton import linear

        if self.input_scale is not None:
            h = h / self.input_scale
        if self.act_scale is not None:  # as edgec.core.layer_input, in torch on the device
            s = self.act_scale
            if self.fp8:
                h = (h / s).clamp(-448, 448).to(torch.float8_e4m3fn).to(torch.float32) * s
            else:
                h = torch.round(h / s).clamp(-127, 127) * s
        y = linear(self.weight, h.contiguous())
        return y + self.bias if self.bias is not None else y


class DeviceLlama:
    """forward(x, cache, start, all_logits) -> logits, with every step on the weights' device."""

    def __init__(self, config: ModelConfig, blocks: Sequence, norm, head: Linear, rotary: Rotary) -> None:
        import torch

        self.config = config
        self.device = head.kernel.weight.device
        self._device_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # KVCache -> (keys, values)

        def dev(a):
            return None if a is None else torch.from_numpy(np.array(a, dtype=np.float32)).to(self.device)

        self.blocks = [{"attn_norm": dev(b.attn_norm), "mlp_norm": dev(b.mlp_norm), "q_norm": dev(b.q_norm),
                        "k_norm": dev(b.k_norm),
                        **{name: _Projection(getattr(b, name), dev) for name in ("q", "k", "v", "o", "gate", "up", "down")}}
                       for b in blocks]
        self.norm, self.head = dev(norm), _Projection(head, dev)
        self.cos, self.sin = dev(rotary.cos), dev(rotary.sin)

    @classmethod
    def build(cls, config: ModelConfig, blocks: Sequence, norm, head: Linear, rotary: Rotary) -> DeviceLlama | None:
        """The device pass over an executor's blocks, or None if some projection is not a Triton kernel."""
        names = ("q", "k", "v", "o", "gate", "up", "down")
        if not _on_device(head) or not all(_on_device(getattr(b, n)) for b in blocks for n in names):
            return None
        return cls(config, blocks, norm, head, rotary)

    def _cache(self, cache: KVCache):
        """The device keys and values of `cache`, which this pass owns: made on first use, freed with the cache."""
        import torch

        state = self._device_caches.get(cache)
        if state is None:
            shape = cache.key_array.shape
            state = self._device_caches[cache] = (torch.zeros(shape, device=self.device),
                                                  torch.zeros(shape, device=self.device))
        return state

    def __call__(self, x: np.ndarray, cache: KVCache, start: int, all_logits: bool) -> np.ndarray:
        import torch

        from edgec.kernels.triton import ops

        c = self.config
        keys, values = self._cache(cache)
        t = len(x)
        stop = start + t
        x = torch.from_numpy(np.array(x, dtype=np.float32)).to(self.device)

        for layer, b in enumerate(self.blocks):
            h = ops.rms_norm(x, b["attn_norm"], c.norm_eps)
            q = b["q"](h).reshape(t, c.heads, c.head_dim)
            k = b["k"](h).reshape(t, c.kv_heads, c.head_dim)
            v = b["v"](h).reshape(t, c.kv_heads, c.head_dim)
            if b["q_norm"] is not None:
                q, k = ops.rms_norm(q, b["q_norm"], c.norm_eps), ops.rms_norm(k, b["k_norm"], c.norm_eps)
            ops.rope_(q, self.cos, self.sin, start)
            ops.rope_(k, self.cos, self.sin, start)
            keys[layer, start:stop] = k
            values[layer, start:stop] = v
            att = ops.attention(q, keys[layer, :stop], values[layer, :stop], start, c.sliding_window or 0)
            x = x + b["o"](att)
            h = ops.rms_norm(x, b["mlp_norm"], c.norm_eps)
            gate = ops.silu_mul_(b["gate"](h), b["up"](h))
            x = x + b["down"](gate)
        last = x if all_logits else x[-1:]
        return self.head(ops.rms_norm(last.contiguous(), self.norm, c.norm_eps)).cpu().numpy()
