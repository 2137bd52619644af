"""Exact weight bytes of a model, with some linears stored in compressed formats."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from edgec.assignment import validate_assignment
from edgec.core.formats import Format
from edgec.models.adapters import Adapter


def model_bytes(model: nn.Module, adapter: Adapter, assignment: Mapping[str, Format] | None = None) -> int:
    """Bytes of every parameter (tied ones once): assigned linear weights at their format's
    exact storage size, everything else at the dtype it is held in."""
    refs = validate_assignment(model, adapter, assignment or {})
    stored = {id(ref.module.weight): assignment[name].nbytes(ref.shape) for name, ref in refs.items()}
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already yields a tied tensor once
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += stored.get(id(p), p.numel() * p.element_size())
    return total


def linear_bits_per_weight(model: nn.Module, adapter: Adapter, assignment: Mapping[str, Format]) -> float:
    """Stored bits per weight over the assigned linears, everything (scales, metadata) included."""
    refs = validate_assignment(model, adapter, assignment)
    stored = sum(assignment[name].nbytes(ref.shape) for name, ref in refs.items())
    return 8 * stored / sum(ref.shape[0] * ref.shape[1] for ref in refs.values())
