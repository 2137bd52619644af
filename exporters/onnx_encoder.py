"""Export-friendly BERT encoder over an HF `BertModel`'s tensors:

    forward(input_ids (B, T), attention_mask (B, T), token_type_ids (B, T), all int64)
      -> last_hidden_state (B, T, D) float32

the signature optimum and ONNX Runtime use for BERT-family feature extractors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgec.core.architectures import BERT, architecture_for
from edgec.core.errors import EdgecError
from edgec.exporters.onnx_flat import Slot, attend, shared


class BertBlock(nn.Module):
    """One post-norm block: attention, add & LayerNorm, GELU MLP, add & LayerNorm (biases inside the slots)."""

    def __init__(self, hf: nn.Module, i: int, config) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        name = {role: BERT.block_tensor(i, role) for role in BERT.block_tensors}
        self.q, self.k, self.v, self.o = (Slot.of(hf, name[role]) for role in ("q", "k", "v", "o"))
        self.ln_attn = hf.get_submodule(name["attn_norm"])
        self.up = Slot.of(hf, name["up"])
        self.act = hf.get_submodule(BERT.block.format(i=i)).intermediate.intermediate_act_fn
        self.down = Slot.of(hf, name["down"])
        self.ln_out = hf.get_submodule(name["out_norm"])

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
        self.word, self.pos, self.types = (shared(hf.get_submodule(BERT.tensors[role]).weight)
                                           for role in ("embedding", "positions", "token_types"))
        self.ln_emb = hf.get_submodule(BERT.tensors["embedding_norm"])
        self.blocks = nn.ModuleList(BertBlock(hf, i, config) for i in range(len(hf.get_submodule(BERT.blocks))))

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
    if architecture_for(hf.config.model_type) is not BERT:
        raise EdgecError(f"model type {hf.config.model_type!r}: only BERT encoders are supported by the ONNX exporter")
    return BertEncoder(hf).eval()
