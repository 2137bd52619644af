"""Export-friendly decoders with an explicit KV cache: LLaMA family (LLaMA, Mistral, Qwen2/3) and GPT-2.

Each takes its tensors from a loaded Hugging Face model (no copies) and has the
signature ONNX Runtime GenAI and optimum use for decoders:

    forward(input_ids (B, T) int64, attention_mask (B, P+T) int64, position_ids (B, T) int64,
            *past: past_key_values.N.key / .value, each (B, h_kv, P, hd) float32)
      -> logits (B, T, V), then present.N.key / .value, each (B, h_kv, P+T, hd)

P may be 0 (the first step). Attention is causal by cache index, as in HF.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from edgec.core.architecture_config import config_values
from edgec.core.architectures import GPT2, LLAMA, architecture_for
from edgec.core.errors import EdgecError
from edgec.exporters.onnx_flat import (
    Slot,
    apply_rotary,
    attend,
    decoder_mask,
    rms_norm,
    rotary,
    shared,
)

STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # rope types whose frequencies do not depend on the length


def _refuse(config, what: str) -> EdgecError:
    return EdgecError(f"model type {config.model_type!r}: {what} is not supported by the ONNX exporter")


class LlamaBlock(nn.Module):
    """One pre-norm block: GQA attention with rotary positions, then a SwiGLU MLP."""

    def __init__(self, hf: nn.Module, i: int, figures: dict[str, Any], window: int | None) -> None:
        super().__init__()
        hf_block = hf.get_submodule(LLAMA.block.format(i=i))
        self.n_heads, self.n_kv, self.head_dim = figures["heads"], figures["kv_heads"], figures["head_dim"]
        self.eps = figures["norm_eps"]
        self.scale = hf_block.self_attn.scaling
        self.window = window
        self.attn_norm, self.mlp_norm = (_weight(hf, LLAMA.block_tensor(i, role)) for role in ("attn_norm", "mlp_norm"))
        self.q_norm, self.k_norm = (_weight(hf, LLAMA.block_tensor(i, role), optional=True)  # Qwen3
                                    for role in ("q_norm", "k_norm"))
        self.q, self.k, self.v, self.o, self.gate, self.up, self.down = (Slot.of(hf, LLAMA.block_tensor(i, role))
                                                                         for role in LLAMA.linears)
        self.act = hf_block.mlp.act_fn

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor, past_v: Tensor,
                attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        h = rms_norm(x, self.attn_norm, self.eps)  # (B, T, D)
        q = self.q(h).view(b, t, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = self.k(h).view(b, t, self.n_kv, self.head_dim)  # (B, T, h_kv, hd)
        v = self.v(h).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)  # (B, h_kv, T, hd)
        if self.q_norm is not None:
            q, k = rms_norm(q, self.q_norm, self.eps), rms_norm(k, self.k_norm, self.eps)
        q = apply_rotary(q.transpose(1, 2), cos, sin)  # (B, H, T, hd)
        k = apply_rotary(k.transpose(1, 2), cos, sin)  # (B, h_kv, T, hd)
        k, v = _cat(past_k, k), _cat(past_v, v)  # (B, h_kv, P+T, hd)
        allowed = decoder_mask(attention_mask, past_k.shape[2], t, self.window)  # (B, 1, T, P+T)
        x = x + self.o(attend(q, k, v, allowed, self.scale))  # (B, T, D)
        h = rms_norm(x, self.mlp_norm, self.eps)
        x = x + self.down(self.act(self.gate(h)) * self.up(h))
        return x, k, v


def _weight(hf: nn.Module, name: str, optional: bool = False) -> Tensor | None:
    """The weight of the module `name` of `hf`, shared (None if `optional` and the model has no such module)."""
    try:
        return shared(hf.get_submodule(name).weight)
    except AttributeError:
        if optional:
            return None
        raise


def _cat(past: Tensor, new: Tensor) -> Tensor:
    """The cache after this step: past (B, h, P, hd) then new (B, h, T, hd) along the sequence."""
    return torch.cat([past, new], dim=2)


class LlamaDecoder(nn.Module):
    """LLaMA-family decoder over an HF `LlamaForCausalLM`-like model (also Mistral, Qwen2, Qwen3)."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        config = hf.config
        figures = _figures(config)
        rotary_emb = hf.get_submodule(LLAMA.base).rotary_emb
        rope_type = getattr(rotary_emb, "rope_type", "default")
        if rope_type not in STATIC_ROPE:
            raise _refuse(config, f"rope type {rope_type!r} (its frequencies change with the length)")
        self.embed = _weight(hf, LLAMA.tensors["embedding"])  # (V, D)
        self.inv_freq = shared(rotary_emb.inv_freq)  # from the HF module: the right base (rope_theta) and scaling
        self.rope_scaling = float(rotary_emb.attention_scaling)
        layer_types = getattr(config, "layer_types", None) or ["full_attention"] * figures["layers"]
        window = getattr(config, "sliding_window", None)
        self.blocks = nn.ModuleList(
            LlamaBlock(hf, i, figures, window if layer_types[i] == "sliding_attention" else None)
            for i in range(len(hf.get_submodule(LLAMA.blocks))))
        self.norm = _weight(hf, LLAMA.tensors["final_norm"])
        self.eps = figures["norm_eps"]
        self.head = Slot.of(hf, LLAMA.tensors["head"])

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        x = self.embed[input_ids]  # (B, T, D)
        cos, sin = rotary(position_ids, self.inv_freq, self.rope_scaling)  # (B, T, hd)
        present: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin, past[2 * i], past[2 * i + 1], attention_mask)
            present += [k, v]
        logits = self.head(rms_norm(x, self.norm, self.eps))  # (B, T, V)
        return (logits, *present)


class GPT2Block(nn.Module):
    """One GPT-2 block: LayerNorm, fused-qkv attention, LayerNorm, GELU MLP (biases outside the slots)."""

    def __init__(self, hf: nn.Module, i: int, figures: dict[str, Any]) -> None:
        super().__init__()
        hf_block = hf.get_submodule(GPT2.block.format(i=i))
        attn = hf_block.attn
        self.n_heads, self.head_dim = figures["heads"], figures["head_dim"]
        self.scale = attn.scaling if hasattr(attn, "scaling") else self.head_dim**-0.5
        self.ln_1, self.ln_2 = (hf.get_submodule(GPT2.block_tensor(i, role)) for role in ("attn_norm", "mlp_norm"))
        self.qkv, self.proj, self.fc, self.out = (Slot.of(hf, GPT2.block_tensor(i, role)) for role in GPT2.linears)
        self.act = hf_block.mlp.act

    def forward(self, x: Tensor, past_k: Tensor, past_v: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        qkv = self.qkv(self.ln_1(x)).view(b, t, 3, self.n_heads, self.head_dim)  # (B, T, 3, H, hd)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # (B, H, T, hd)
        k, v = _cat(past_k, k), _cat(past_v, v)  # (B, H, P+T, hd)
        allowed = decoder_mask(attention_mask, past_k.shape[2], t)
        x = x + self.proj(attend(q, k, v, allowed, self.scale))
        return x + self.out(self.act(self.fc(self.ln_2(x)))), k, v


class GPT2Decoder(nn.Module):
    """GPT-2 over an HF `GPT2LMHeadModel`: learned positions read at position_ids."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        config = hf.config
        if getattr(config, "add_cross_attention", False):
            raise _refuse(config, "cross-attention")
        figures = _figures(config)
        self.wte, self.wpe = (_weight(hf, GPT2.tensors[role]) for role in ("embedding", "positions"))  # (V, D), (n_positions, D)
        self.blocks = nn.ModuleList(GPT2Block(hf, i, figures) for i in range(len(hf.get_submodule(GPT2.blocks))))
        self.ln_f = hf.get_submodule(GPT2.tensors["final_norm"])
        self.head = Slot.of(hf, GPT2.tensors["head"])

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        x = self.wte[input_ids] + self.wpe[position_ids]  # (B, T, D)
        present: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, past[2 * i], past[2 * i + 1], attention_mask)
            present += [k, v]
        return (self.head(self.ln_f(x)), *present)


DECODERS: dict[str, type[nn.Module]] = {LLAMA.family: LlamaDecoder, GPT2.family: GPT2Decoder}  # family -> decoder


def _figures(config) -> dict[str, Any]:
    """The ModelConfig figures of an HF config (`edgec.core.architecture_config`)."""
    return config_values(architecture_for(config.model_type), config.model_type, config.to_dict())


def kv_shape(config) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) of a decoder config."""
    figures = _figures(config)
    return figures["layers"], figures["kv_heads"], figures["head_dim"]


def build_decoder(hf: nn.Module) -> nn.Module:
    """The flat decoder of an HF causal LM; refuses architectures it does not cover."""
    arch = architecture_for(hf.config.model_type)
    cls = DECODERS.get(arch.family) if arch is not None else None
    if cls is None:
        raise _refuse(hf.config, "this architecture")
    return cls(hf).eval()
