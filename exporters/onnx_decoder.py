"""Export-friendly decoders with an explicit KV cache: LLaMA family (LLaMA, Mistral, Qwen2/3), Phi-3, Gemma 3 and GPT-2.

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
from edgec.core.architectures import GEMMA3, GPT2, LLAMA, NORM_WEIGHT_OFFSET, PHI3, Architecture, architecture_for
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
    """One pre-norm block: GQA attention with rotary positions, then a gated MLP.

    Read through the family's description: LLaMA's (SwiGLU, Qwen3's optional q/k norms) or Gemma 3's
    (norms scaling by 1 + weight, norms on the attention's and the MLP's outputs, GeGLU). Families with
    this structure but other projections (Phi-3) subclass it and replace `_linears`, `_qkv` and `_gate_up`.
    """

    arch: Architecture = LLAMA
    activation = "act_fn"  # the HF MLP's attribute holding its activation

    def __init__(self, hf: nn.Module, i: int, figures: dict[str, Any], window: int | None) -> None:
        super().__init__()
        hf_block = hf.get_submodule(self.arch.block.format(i=i))
        self.n_heads, self.n_kv, self.head_dim = figures["heads"], figures["kv_heads"], figures["head_dim"]
        self.eps = figures["norm_eps"]
        self.scale = hf_block.self_attn.scaling
        self.window = window
        arch = self.arch
        self.attn_norm, self.mlp_norm = (_norm(hf, arch, arch.block_tensor(i, role)) for role in ("attn_norm", "mlp_norm"))
        # Qwen3's per-head query/key norms and Gemma 3's norms on the attention's and the MLP's outputs
        self.q_norm, self.k_norm, self.attn_out_norm, self.mlp_out_norm = (
            _norm(hf, arch, arch.block_tensor(i, role), optional=True) if role in arch.block_tensors else None
            for role in ("q_norm", "k_norm", "attn_out_norm", "mlp_out_norm"))
        self._linears(hf, i)
        self.act = getattr(hf_block.mlp, self.activation)

    def _linears(self, hf: nn.Module, i: int) -> None:
        """The block's linears as slots, in execution order (the ONNX graph's order)."""
        self.q, self.k, self.v, self.o, self.gate, self.up, self.down = (Slot.of(hf, self.arch.block_tensor(i, role))
                                                                         for role in self.arch.linears)

    def _qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, T, H * hd), keys and values (B, T, h_kv * hd) of the normed input."""
        return self.q(h), self.k(h), self.v(h)

    def _gate_up(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The MLP's gate and up projections (B, T, ff) of the normed input."""
        return self.gate(h), self.up(h)

    def _out_norm(self, x: Tensor, weight: Tensor | None) -> Tensor:
        return x if weight is None else rms_norm(x, weight, self.eps)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor, past_v: Tensor,
                attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self._qkv(rms_norm(x, self.attn_norm, self.eps))
        q = q.view(b, t, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = k.view(b, t, self.n_kv, self.head_dim)  # (B, T, h_kv, hd)
        v = v.view(b, t, self.n_kv, self.head_dim).transpose(1, 2)  # (B, h_kv, T, hd)
        if self.q_norm is not None:
            q, k = rms_norm(q, self.q_norm, self.eps), rms_norm(k, self.k_norm, self.eps)
        q = apply_rotary(q.transpose(1, 2), cos, sin)  # (B, H, T, hd)
        k = apply_rotary(k.transpose(1, 2), cos, sin)  # (B, h_kv, T, hd)
        k, v = _cat(past_k, k), _cat(past_v, v)  # (B, h_kv, P+T, hd)
        allowed = decoder_mask(attention_mask, past_k.shape[2], t, self.window)  # (B, 1, T, P+T)
        x = x + self._out_norm(self.o(attend(q, k, v, allowed, self.scale)), self.attn_out_norm)  # (B, T, D)
        gate, up = self._gate_up(rms_norm(x, self.mlp_norm, self.eps))
        x = x + self._out_norm(self.down(self.act(gate) * up), self.mlp_out_norm)
        return x, k, v


class Phi3Block(LlamaBlock):
    """A Phi-3 block: the LLaMA block over a fused q/k/v (rows: queries, keys, values) and a fused gate/up."""

    arch = PHI3
    activation = "activation_fn"

    def _linears(self, hf: nn.Module, i: int) -> None:
        self.qkv, self.o, self.gate_up, self.down = (Slot.of(hf, PHI3.block_tensor(i, role)) for role in PHI3.linears)

    def _qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        return self.qkv(h).split([q_dim, kv_dim, kv_dim], dim=-1)

    def _gate_up(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.gate_up(h).chunk(2, dim=-1)


class Gemma3Block(LlamaBlock):
    """A Gemma 3 block: the LLaMA block read through Gemma 3's description (its norms and GeGLU)."""

    arch = GEMMA3


def _weight(hf: nn.Module, name: str, optional: bool = False) -> Tensor | None:
    """The weight of the module `name` of `hf`, shared (None if `optional` and the model has no such module)."""
    try:
        return shared(hf.get_submodule(name).weight)
    except AttributeError:
        if optional:
            return None
        raise


def _norm(hf: nn.Module, arch: Architecture, name: str, optional: bool = False) -> Tensor | None:
    """The factor the norm `name` scales by: its weight, shared, or a new tensor (1 + weight) for Gemma's
    (None if `optional` and the model has no such norm)."""
    weight = _weight(hf, name, optional)
    offset = NORM_WEIGHT_OFFSET[arch.norm]
    return weight if weight is None or not offset else shared(weight + offset)


def _rotary_table(config, rotary_emb: nn.Module, kind: str) -> tuple[Tensor, float]:
    """The inverse frequencies (shared) and scaling of attention kind `kind`: Gemma 3's rotary module keeps them
    prefixed by the kind, LLaMA's one table for every layer. Refuses a rope type whose frequencies change."""
    prefix = f"{kind}_" if hasattr(rotary_emb, f"{kind}_inv_freq") else ""
    rope_type = getattr(rotary_emb, "rope_type", "default")
    rope_type = rope_type.get(kind, "default") if isinstance(rope_type, dict) else rope_type
    if rope_type not in STATIC_ROPE:
        raise _refuse(config, f"rope type {rope_type!r} (its frequencies change with the length)")
    return shared(getattr(rotary_emb, f"{prefix}inv_freq")), float(getattr(rotary_emb, f"{prefix}attention_scaling"))


def _cat(past: Tensor, new: Tensor) -> Tensor:
    """The cache after this step: past (B, h, P, hd) then new (B, h, T, hd) along the sequence."""
    return torch.cat([past, new], dim=2)


class LlamaDecoder(nn.Module):
    """LLaMA-family decoder over an HF `LlamaForCausalLM`-like model (also Mistral, Qwen2, Qwen3)."""

    block: type[LlamaBlock] = LlamaBlock

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        config, arch = hf.config, self.block.arch
        figures = _figures(config)
        if figures.get("bidirectional"):
            raise _refuse(config, "bidirectional attention")
        if figures.get("attention_softcap") is not None:  # transformers' Gemma 3 reads it but never applies it
            raise _refuse(config, "attention logit soft-capping")
        rotary_emb = hf.get_submodule(arch.base).rotary_emb
        # from the HF module: the right base (rope_theta), scaling and rotated share; Gemma 3 keeps a table per
        # attention kind
        self.inv_freq, self.rope_scaling = _rotary_table(config, rotary_emb, "full_attention")
        self.sliding_inv_freq, self.sliding_rope_scaling = (
            _rotary_table(config, rotary_emb, "sliding_attention") if hasattr(rotary_emb, "sliding_attention_inv_freq")
            else (None, None))
        # Per-layer attention kinds where the config lists them (Qwen2, Gemma 3); else the window, if any,
        # applies everywhere.
        window = figures.get("sliding_window")
        layer_types = getattr(config, "layer_types", None) or ["sliding_attention"] * figures["layers"]
        self.sliding = [kind == "sliding_attention" for kind in layer_types]
        self.embed = _weight(hf, arch.tensors["embedding"])  # (V, D)
        self.embed_scale = figures.get("embedding_scale")
        self.blocks = nn.ModuleList(
            self.block(hf, i, figures, window if self.sliding[i] else None)
            for i in range(len(hf.get_submodule(arch.blocks))))
        self.norm = _norm(hf, arch, arch.tensors["final_norm"])
        self.eps = figures["norm_eps"]
        self.logit_cap = figures.get("logit_softcap")
        self.head = Slot.of(hf, arch.tensors["head"])

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        x = self.embed[input_ids]  # (B, T, D)
        if self.embed_scale is not None:
            x = x * self.embed_scale
        full = rotary(position_ids, self.inv_freq, self.rope_scaling)  # cos, sin (B, T, rotated dims)
        sliding = full if self.sliding_inv_freq is None else rotary(position_ids, self.sliding_inv_freq,
                                                                    self.sliding_rope_scaling)
        present: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, *(sliding if self.sliding[i] else full), past[2 * i], past[2 * i + 1], attention_mask)
            present += [k, v]
        logits = self.head(rms_norm(x, self.norm, self.eps))  # (B, T, V)
        if self.logit_cap is not None:
            logits = torch.tanh(logits / self.logit_cap) * self.logit_cap
        return (logits, *present)


class Phi3Decoder(LlamaDecoder):
    """Phi-3 decoder over an HF `Phi3ForCausalLM` (rotary on a share of each head where the config says so)."""

    block = Phi3Block


class Gemma3Decoder(LlamaDecoder):
    """Gemma 3 text decoder over an HF `Gemma3ForCausalLM`: sliding and global layers, each kind with its
    own rotary base; the embedding scaled by sqrt(hidden_size)."""

    block = Gemma3Block


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


DECODERS: dict[str, type[nn.Module]] = {LLAMA.family: LlamaDecoder, PHI3.family: Phi3Decoder,  # family -> decoder
                                        GPT2.family: GPT2Decoder, GEMMA3.family: Gemma3Decoder}


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
