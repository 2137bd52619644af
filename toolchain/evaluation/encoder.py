"""Sentence-embedding similarity of an encoder against its original.

Embeddings follow all-MiniLM-L6-v2's sentence-transformers pipeline: mean of
the last hidden states over non-padding tokens, then L2 normalisation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from edgec.core.errors import EdgecError
from edgec.core.progress import progress_counter

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class EncoderComparison:
    """What `edgec eval` reports for an encoder."""

    sentences: int
    mean_cosine: float | None = None
    min_cosine: float | None = None


def split_sentences(text: str, limit: int, min_words: int = 4) -> list[str]:
    """The first `limit` sentences of at least `min_words` words, whitespace collapsed."""
    out = []
    for raw in _SENTENCE_END.split(text):
        sentence = " ".join(raw.split())
        if len(sentence.split()) >= min_words:
            out.append(sentence)
            if len(out) == limit:
                break
    if not out:
        raise EdgecError(f"the text has no sentence of at least {min_words} words")
    return out


@torch.inference_mode()
def embed(model: nn.Module, tokenizer: PreTrainedTokenizerBase, sentences: list[str], batch_size: int = 64,
          progress: bool = False) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings (n, hidden)."""
    out = []
    for start in progress_counter(range(0, len(sentences), batch_size), desc="embedding", unit="batch", enabled=progress):
        batch = tokenizer(sentences[start : start + batch_size], padding=True, truncation=True, max_length=256,
                          return_tensors="pt").to(model.device)
        hidden = model(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(out)


def compare_encoder(original: nn.Module, compressed: nn.Module | None, tokenizer: PreTrainedTokenizerBase,
                    sentences: list[str], batch_size: int = 64, progress: bool = True) -> EncoderComparison:
    """Cosine similarity of `compressed`'s sentence embeddings to `original`'s."""
    if compressed is None:
        return EncoderComparison(len(sentences))
    reference = embed(original, tokenizer, sentences, batch_size, progress)
    candidate = embed(compressed, tokenizer, sentences, batch_size, progress)
    cosine = (reference * candidate).sum(-1)
    return EncoderComparison(len(sentences), cosine.mean().item(), cosine.min().item())
