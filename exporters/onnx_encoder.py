"""Export-friendly BERT encoder over an HF `BertModel`'s tensors:

    forward(input_ids (B, T), attention_mask (B, T), token_type_ids (B, T), all int64)
      -> last_hidden_state (B, T, D) float32

the signature optimum and ONNX Runtime use for BERT-family feature extractors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgec.core.errors import EdgecError
from edgec.exporters.onnx_flat import Slot, attend, shared


class BertBlock(nn.Module):
    """One post-norm block: attention, add & LayerNorm, GELU MLP, add & LayerNorm (biases inside the slots)."""

    def __init__(self, hf_layer: nn.Module, prefix: str, config) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        attn = hf_layer.attention
        self.q, self.k, self.v = (Slot(f"{prefix}.attention.self.{p}", getattr(attn.self, p)) for p in ("query", "key", "value"))
        self.o = Slot(f"{prefix}.attention.output.dense", attn.output.dense)
        self.ln_attn = attn.output.LayerNorm
        self.up = Slot(f"{prefix}.intermediate.dense", hf_layer.intermediate.dense)
        self.act = hf_layer.intermediate.intermediate_act_fn
        self.down = Slot(f"{prefix}.output.dense", hf_layer.output.dense)
        self.ln_out = hf_layer.output.LayerNorm

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        b, t, _ = x.shape
        q, k, v = (s(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2) for s in (self.q, self.k, self.v))  # (B, H, T, hd)
        x = self.ln_attn(x + self.o(attend(q, k, v, allowed)))  # (B, T, D)
        return self.ln_out(x + self.down(self.act(self.up(x))))


class BertEncoder(nn.Module):
    """BERT with absolute positions 0..T-1 and token types, no pooler."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        config = hf.config
        if getattr(config, "position_embedding_type", "absolute") != "absolute" or config.is_decoder:
            raise EdgecError(f"model type {config.model_type!r}: only absolute-position BERT encoders are supported "
                             f"by the ONNX exporter")
        emb = hf.embeddings
        self.word, self.pos, self.types = (shared(e.weight) for e in (emb.word_embeddings, emb.position_embeddings,
                                                                       emb.token_type_embeddings))
        self.ln_emb = emb.LayerNorm
        self.blocks = nn.ModuleList(BertBlock(layer, f"encoder.layer.{i}", config) for i, layer in enumerate(hf.encoder.layer))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        t = input_ids.shape[1]
        positions = torch.arange(t, device=input_ids.device)  # (T,)
        x = self.ln_emb(self.word[input_ids] + self.pos[positions][None] + self.types[token_type_ids])  # (B, T, D)
        allowed = attention_mask[:, None, None, :].bool()  # (B, 1, 1, T): keys that are not padding
        for block in self.blocks:
            x = block(x, allowed)
        return x


def build_encoder(hf: nn.Module) -> nn.Module:
    """The flat encoder of an HF BERT model; refuses other encoders."""
    if hf.config.model_type != "bert":
        raise EdgecError(f"model type {hf.config.model_type!r}: only BERT encoders are supported by the ONNX exporter")
    return BertEncoder(hf).eval()
