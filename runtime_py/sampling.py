"""Choosing the next token from logits: greedy, or temperature with top-k and top-p (nucleus) filtering."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgec.core.errors import EdgecError
from edgec.runtime.values import is_integer, is_number


@dataclass(frozen=True)
class SamplingSettings:
    """temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise EdgecError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not is_integer(self.top_k) or self.top_k < 0:
            raise EdgecError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not is_number(self.top_p) or not 0 < self.top_p <= 1:  # nan fails the comparison too
            raise EdgecError(f"top_p must lie in (0, 1], got {self.top_p!r}")


def make_rng(seed: object) -> np.random.Generator:
    """The sampling generator for `seed` (None: fresh entropy); refuses what numpy would refuse with its own error."""
    if seed is not None and (not is_integer(seed) or seed < 0):
        raise EdgecError(f"seed must be an integer >= 0 or None, got {seed!r}")
    return np.random.default_rng(seed)


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
