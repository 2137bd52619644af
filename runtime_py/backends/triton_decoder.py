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

import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgec.core.formats.fp8 import FP8
from edgec.runtime.backends.base import Linear
from edgec.runtime.backends.triton_graph import CapturedDecode
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
        self._device_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # KVCache -> _CacheState
        self.graphs = self.device.type == "cuda" and os.environ.get("EDGEC_CUDA_GRAPHS", "1") != "0"

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

    def _cache(self, cache: KVCache) -> _CacheState:
        """The device keys and values of `cache`, which this pass owns (made on first use, freed with the cache),
        and its captured decode step."""
        import torch

        state = self._device_caches.get(cache)
        if state is None:
            shape = cache.key_array.shape
            keys, values = torch.zeros(shape, device=self.device), torch.zeros(shape, device=self.device)

            def step(x, position):
                return self._pass(x, keys, values, position, position, all_logits=False)

            captured = CapturedDecode(step, self.config.hidden_size, self.device) if self.graphs else None
            state = self._device_caches[cache] = _CacheState(keys, values, step, captured)
        return state

    def __call__(self, x: np.ndarray, cache: KVCache, start: int, all_logits: bool) -> np.ndarray:
        """Logits of the tokens whose embeddings are `x` (T, hidden) at positions start.., their keys and values
        written to the cache. One token on a GPU replays the cache's captured decode step (`CapturedDecode`)."""
        import torch

        from edgec.kernels.triton import ops

        state = self._cache(cache)
        t = len(x)
        if t == 1 and state.captured is not None:
            return state.captured(x, start)
        h = torch.from_numpy(np.array(x, dtype=np.float32)).to(self.device)
        position = ops.position_tensor(start, self.device)
        if t == 1:  # the step a GPU captures, run as it is
            return state.step(h, position).cpu().numpy()
        slots = torch.arange(start, start + t, device=self.device)
        return self._pass(h, state.keys, state.values, position, slots, all_logits).cpu().numpy()

    def _pass(self, x, keys, values, position, slots, all_logits: bool):
        """The blocks and the head over x (T, hidden) on the device, at the positions starting at the device int64
        `position`, storing keys and values at the cache rows `slots` (T,): logits (T or 1, vocab) on the device.
        Every shape is fixed by T, so one token's pass can be captured and replayed."""
        from edgec.kernels.triton import ops

        c = self.config
        t = x.shape[0]
        for layer, b in enumerate(self.blocks):
            h = ops.rms_norm(x, b["attn_norm"], c.norm_eps)
            q = b["q"](h).reshape(t, c.heads, c.head_dim)
            k = b["k"](h).reshape(t, c.kv_heads, c.head_dim)
            v = b["v"](h).reshape(t, c.kv_heads, c.head_dim)
            if b["q_norm"] is not None:
                q, k = ops.rms_norm(q, b["q_norm"], c.norm_eps), ops.rms_norm(k, b["k_norm"], c.norm_eps)
            ops.rope_(q, self.cos, self.sin, position)
            ops.rope_(k, self.cos, self.sin, position)
            keys[layer].index_copy_(0, slots, k)
            values[layer].index_copy_(0, slots, v)
            att = ops.attention(q, keys[layer], values[layer], position, c.sliding_window or 0)
            x = x + b["o"](att)
            h = ops.rms_norm(x, b["mlp_norm"], c.norm_eps)
            gate = ops.silu_mul_(b["gate"](h), b["up"](h))
            x = x + b["down"](gate)
        last = x if all_logits else x[-1:]
        return self.head(ops.rms_norm(last.contiguous(), self.norm, c.norm_eps))


@dataclass(frozen=True)
class _CacheState:
    keys: object      # device tensors (layers, context, kv_heads, head_dim)
    values: object
    step: Callable    # step(x (1, hidden), position) -> logits (1, vocab), all on the device
    captured: CapturedDecode | None  # on a GPU with graphs enabled
