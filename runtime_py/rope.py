"""Rotary position embeddings: inverse frequencies for the rope types the runtime supports, and their application."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgec.core.errors import ContainerError
from edgec.runtime.model_config import ModelConfig

LENGTH_DEPENDENT = ("dynamic", "longrope")  # rope types whose frequencies change with the sequence length


def inverse_frequencies(rope: dict[str, Any] | None, head_dim: int) -> np.ndarray:
    """(dims/2,) float64 inverse frequencies of the settings `rope`, as transformers computes them for `default`,
    `linear`, `llama3`; dims is the rotated share of a head (`partial_rotary_factor` of head_dim, all of it by
    default)."""
    rope = rope or {}
    dim = int(head_dim * rope.get("partial_rotary_factor", 1.0))
    inv = 1.0 / rope.get("rope_theta", 10000.0) ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    kind = rope.get("rope_type", "default")
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / rope["factor"]
    if kind == "llama3":
        factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old = rope["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - low) / (high - low)
        scaled = np.where(wavelen > old / low, inv / factor, inv)
        middle = (wavelen <= old / low) & (wavelen >= old / high)
        return np.where(middle, (1 - smooth) * inv / factor + smooth * inv, scaled)
    raise ContainerError(f"rope type {kind!r} is not supported by the runtime (default, linear, llama3)"
                         + (": its frequencies change with the sequence length" if kind in LENGTH_DEPENDENT else ""))


class Rotary:
    """cos/sin tables for positions 0..max_positions-1, computed once; `apply` rotates (T, heads, head_dim).

    `dims` is how many leading dimensions of each head rotate (all of them unless the settings give a
    `partial_rotary_factor`); the others pass unchanged. `rope` overrides the config's rotary settings
    (the sliding layers' own, in Gemma 3).
    """

    def __init__(self, config: ModelConfig, max_positions: int, rope: dict[str, Any] | None = None) -> None:
        frequencies = inverse_frequencies(config.rope if rope is None else rope, config.head_dim)
        angles = np.outer(np.arange(max_positions, dtype=np.float64), frequencies)  # (P, dims/2)
        self.cos = np.cos(angles).astype(np.float32)
        self.sin = np.sin(angles).astype(np.float32)
        self.dims = 2 * angles.shape[1]

    def apply(self, x: np.ndarray, positions: slice) -> np.ndarray:
        """Rotate the two halves of each head's rotated dimensions (the HF `rotate_half` convention); x is
        (T, heads, hd)."""
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]  # (T, 1, dims/2)
        half = self.dims // 2
        a, b = x[..., :half], x[..., half:self.dims]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin, x[..., self.dims:]], axis=-1)
