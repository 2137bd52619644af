"""Building blocks of the export-friendly torch models: linear slots, norms, rotary embedding, attention.

The flat models (`onnx_decoder`, `onnx_encoder`) are written gpt-fast style over a
Hugging Face model's own tensors (nothing is copied): they compute exactly what the
HF model computes, with the KV cache as explicit tensors in and out, so that the
TorchScript tracer of `torch.onnx.export` sees plain tensor code.

Every quantizable linear goes through `LinearSlot`: run eagerly it calls the HF
module itself (so its bias and any activation-quantization hook apply); traced for
ONNX it leaves one placeholder node `edgec::Linear(x) {layer="<module name>"}`,
which the exporter replaces by the ops of that layer's storage format
(`onnx_lowering`). The float weights of compressed layers therefore never enter
the traced graph.
"""

from __future__ import annotations

import math

import torch
from torch import nn

PLACEHOLDER_DOMAIN = "edgec"
PLACEHOLDER_OP = "Linear"
NEG_INF = torch.finfo(torch.float32).min  # masked scores: finite, so fully masked rows stay NaN-free


class _LinearSlotFn(torch.autograd.Function):
    """Eager: the module's forward. Traced: the `edgec::Linear` placeholder naming the layer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, slot: Slot) -> torch.Tensor:
        if torch.jit.is_tracing():  # only the shape matters: keep the weight out of the trace
            return x.new_zeros(*x.shape[:-1], slot.out_features)
        return slot.module(x)

    @staticmethod
    def symbolic(g, x, name: str, slot: Slot):
        out = g.op(f"{PLACEHOLDER_DOMAIN}::{PLACEHOLDER_OP}", x, layer_s=name)
        sizes = x.type().varyingSizes()
        out.setType(x.type().with_sizes([*sizes[:-1], slot.out_features]) if sizes else x.type())
        return out


class Slot(nn.Module):
    """A quantizable linear of the HF model, by module name; its parameters stay out of the flat model."""

    def __init__(self, name: str, module: nn.Module) -> None:
        super().__init__()
        self.name = name
        weight = module.weight
        self.out_features = weight.shape[1] if type(module).__name__ == "Conv1D" else weight.shape[0]
        object.__setattr__(self, "module", module)  # not registered: its weight must not be traced

    @classmethod
    def of(cls, hf: nn.Module, name: str) -> Slot:
        """The slot of the linear `name` of the HF model `hf`."""
        return cls(name, hf.get_submodule(name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LinearSlotFn.apply(x, self.name, self)


def shared(t: torch.Tensor) -> nn.Parameter:
    """A frozen parameter sharing the HF tensor's storage (no copy)."""
    return nn.Parameter(t.detach(), requires_grad=False)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaMA's RMSNorm, in float32 as HF computes it."""
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotary(position_ids: torch.Tensor, inv_freq: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, T, hd) of positions (B, T), as HF's rotary embedding computes them."""
    freqs = position_ids[..., None].float() * inv_freq  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
    if scaling == 1.0:
        return emb.cos(), emb.sin()
    return emb.cos() * scaling, emb.sin() * scaling


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, h, T, hd) by cos, sin (B, T, hd)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def decoder_mask(attention_mask: torch.Tensor, past_len: torch.Tensor | int, seq_len: int,
                 window: int | None = None) -> torch.Tensor:
    """Allowed (B, 1, T, S) bool: causal by cache index, within `window`, and not padding.

    Query i sits at cache index past_len + i; key j is visible if j <= that index (and
    index - j < window for sliding attention) and attention_mask[b, j] is 1.
    """
    total = attention_mask.shape[1]  # S = P + T
    q_idx = torch.arange(seq_len, device=attention_mask.device)[:, None] + past_len  # (T, 1)
    k_idx = torch.arange(total, device=attention_mask.device)[None, :]  # (1, S)
    allowed = k_idx <= q_idx  # (T, S)
    if window is not None:
        allowed = allowed & (q_idx - k_idx < window)
    return allowed[None, None] & attention_mask[:, None, None, :].bool()  # (B, 1, T, S)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
           scale: float | None = None) -> torch.Tensor:
    """Grouped-query attention: q (B, H, T, hd), k/v (B, h_kv, S, hd), allowed (B, 1, T, S) -> (B, T, H*hd).

    Query heads are grouped by the KV head they share instead of repeating K and V.
    """
    b, h, t, hd = q.shape
    h_kv = k.shape[1]
    q = q.reshape(b, h_kv, h // h_kv, t, hd)  # (B, h_kv, rep, T, hd)
    scores = q @ k[:, :, None].transpose(-1, -2)  # (B, h_kv, rep, T, S)
    scores = scores * (scale if scale is not None else 1.0 / math.sqrt(hd))
    scores = scores.masked_fill(~allowed[:, :, None], NEG_INF)  # mask (B, 1, 1, T, S)
    probs = torch.softmax(scores, dim=-1)
    out = probs @ v[:, :, None]  # (B, h_kv, rep, T, hd)
    return out.reshape(b, h, t, hd).transpose(1, 2).reshape(b, t, h * hd)  # (B, T, H*hd)
