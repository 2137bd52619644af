"""Pruning masks by magnitude and by Wanda's score (pure array math).

* magnitude: score |W_ij|, compared over the whole layer (unstructured) — the
  classic baseline of the Wanda and SparseGPT papers;
* Wanda (Sun et al., 2023): score |W_ij| · ‖X_j‖₂, compared within each output row.

For n:m sparsity both keep the m − n highest scores of every m consecutive inputs
of a row.
"""

from __future__ import annotations

import numpy as np


def keep_nm(score: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep mask (N, K): in each group of m inputs of a row, drop the n lowest scores."""
    rows, k = score.shape
    groups = score.reshape(rows, k // m, m)
    drop = np.argsort(groups, axis=2, kind="stable")[:, :, :n]
    keep = np.ones_like(groups, dtype=bool)
    np.put_along_axis(keep, drop, False, axis=2)
    return keep.reshape(rows, k)


def keep_top(score: np.ndarray, sparsity: float, per_row: bool) -> np.ndarray:
    """Keep mask dropping the `sparsity` share of lowest scores, per row or over the whole matrix."""
    if per_row:
        drop = int(score.shape[1] * sparsity)
        order = np.argsort(score, axis=1, kind="stable")[:, :drop]
        keep = np.ones_like(score, dtype=bool)
        np.put_along_axis(keep, order, False, axis=1)
        return keep
    drop = int(score.size * sparsity)
    keep = np.ones(score.size, dtype=bool)
    keep[np.argsort(score, axis=None, kind="stable")[:drop]] = False
    return keep.reshape(score.shape)


def magnitude_score(weight: np.ndarray) -> np.ndarray:
    return np.abs(weight)


def wanda_score(weight: np.ndarray, input_norm: np.ndarray) -> np.ndarray:
    """|W_ij| · ‖X_j‖₂ with ‖X_j‖₂ over all calibration tokens."""
    return np.abs(weight) * input_norm[None, :]
