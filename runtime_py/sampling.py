"""Choosing the next token from logits: greedy, or temperature with top-k and top-p (nucleus) filtering."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.runtime.errors import EdgecError


@dataclass(frozen=True)
class SamplingSettings:
    """temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise EdgecError(f"bad sampling settings: temperature {self.temperature} (>= 0), top_k {self.top_k} (>= 0), "
                             f"top_p {self.top_p} (in (0, 1])")


def next_token(logits: np.ndarray, settings: SamplingSettings, rng: np.random.Generator) -> int:
    """The next token id from a (vocab,) logit vector."""
    if settings.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / settings.temperature
    if settings.top_k:
        kth = np.partition(scaled, -settings.top_k)[-settings.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if settings.top_p < 1:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, settings.top_p)) + 1]  # the smallest set reaching top_p
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(len(probs), p=probs))
