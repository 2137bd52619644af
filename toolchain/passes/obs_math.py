"""The Optimal-Brain-Surgeon column sweep shared by GPTQ and SparseGPT (pure array math).

Given a weight W (N, K) and the Hessian proxy H = Σ x xᵀ (K, K) of its inputs,
columns are fixed one at a time: each column is quantized and/or pruned, and its
error is spread over the not-yet-fixed columns so as to minimise the layer's
output error ‖(W − Ŵ) X‖² (Frantar & Alistarh, GPTQ 2022; SparseGPT 2023):

    U = chol(H⁻¹)ᵀ                          upper Cholesky factor of the damped inverse
    for blocks of B columns [i1, i2):       lazy batch updates
        for column j in the block:
            mask   = prune_select(...)      every B columns (unstructured) / every m (n:m)
            ŵ_j    = quantize(w_j · keep_j)  (groups fitted on the current weights at group start)
            e_j    = (w_j − ŵ_j) / U_jj
            W[:, j:i2] -= e_j ⊗ U[j, j:i2]
        W[:, i2:] -= E · U[i1:i2, i2:]

With `act_order`, columns are visited by decreasing H_jj and group parameters are
fitted once from the original weights (static groups), so groups stay contiguous
in storage order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgec.passes.pruning_math import keep_nm
from edgec.runtime.formats.base import GroupQuantizedFormat


@dataclass(frozen=True)
class PruneSpec:
    """Unstructured sparsity (`sparsity`) or n:m structured sparsity (`n` zeros of every `m`)."""

    sparsity: float = 0.0
    n: int = 0
    m: int = 0

    @property
    def structured(self) -> bool:
        return self.m > 0


@dataclass
class OBSResult:
    """Compressed weights on the format's grid, their codes and group parameters, and the kept mask."""

    weight: np.ndarray  # (N, K) float32, what the compressed layer computes with
    keep: np.ndarray  # (N, K) bool
    codes: np.ndarray | None  # (N, K) codes in natural column order (quantized runs)
    params: dict[str, np.ndarray] | None  # each (N, groups)


def inverse_hessian_factor(hessian: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor of the damped inverse Hessian; dead inputs (H_jj = 0) get H_jj = 1."""
    h = torch.tensor(hessian, dtype=torch.float64)
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h.diagonal().add_(damp * torch.diag(h).mean())
    h_inv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(h_inv, upper=True).numpy()


def obs_sweep(
    w: np.ndarray,
    hessian: np.ndarray,
    quantizer: GroupQuantizedFormat | None = None,
    prune: PruneSpec | None = None,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
) -> OBSResult:
    """Quantize (GPTQ), prune (SparseGPT) or both, with OBS error feedback.

    With pruning and quantization together, pruned weights are exactly zero and the
    quantizer's groups count kept weights only when `prune` is n:m (as the 2:4+F
    formats store them); otherwise groups are over all columns.
    """
    if act_order and prune and prune.structured:
        raise ValueError("act_order cannot be combined with n:m pruning (groups of m must stay in column order)")
    h = np.asarray(hessian, dtype=np.float64)
    w = np.array(w, dtype=np.float32)
    n, k = w.shape
    w[:, np.diag(h) == 0] = 0  # inputs never seen in calibration carry no information
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    w = w[:, perm]
    u = inverse_hessian_factor(h[np.ix_(perm, perm)], damp).astype(np.float32)
    group = _group_span(quantizer, prune, k)
    block = -(-max(block_size, group) // group) * group if group else block_size  # whole groups per block
    keep = np.ones((n, k), dtype=bool)
    codes = None
    params_by_group: dict[int, dict[str, np.ndarray]] = {}
    if quantizer and act_order:
        params_by_group = _static_params(w[:, np.argsort(perm)], quantizer, prune, group)
    out = np.zeros_like(w)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].copy()
        err = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        if prune and not prune.structured:
            keep[:, i1:i2] = _unstructured_keep(w1, np.diag(u1), prune.sparsity)
        for j in range(i2 - i1):
            col = i1 + j
            if prune and prune.structured and col % prune.m == 0:
                keep[:, col : col + prune.m] = _nm_keep(w1[:, j : j + prune.m], np.diag(u1)[j : j + prune.m], prune)
            value = w1[:, j] * keep[:, col]
            if quantizer:
                g = (perm[col] if act_order else col) // group
                if g not in params_by_group:  # natural order: fit at the group's first column
                    span = w1[:, j : j + group]
                    params_by_group[g] = quantizer.fit(_kept_values(span, prune))
                p = {name: v[:, None] for name, v in params_by_group[g].items()}
                q = quantizer.round(value[:, None], p)
                if codes is None:
                    codes = np.zeros((n, k), dtype=q.dtype)
                codes[:, col] = q[:, 0]
                value = quantizer.scale(q, p)[:, 0] * keep[:, col]
            out[:, col] = value
            e = (w1[:, j] - value) / u1[j, j]
            w1[:, j:] -= np.outer(e, u1[j, j:])
            err[:, j] = e
        w[:, i2:] -= err @ u[i1:i2, i2:]
    inv = np.argsort(perm)
    out, keep = out[:, inv], keep[:, inv]
    params = None
    if quantizer:
        codes = codes[:, inv]
        params = {name: np.stack([params_by_group[g][name] for g in sorted(params_by_group)], axis=1)
                  for name in params_by_group[0]}
    return OBSResult(out, keep, codes, params)


def _group_span(quantizer: GroupQuantizedFormat | None, prune: PruneSpec | None, k: int) -> int:
    """Original columns one parameter group covers (kept-value groups of n:m span m/(m-n) times more)."""
    if quantizer is None:
        return 0
    if prune and prune.structured:
        kept = prune.m - prune.n
        return quantizer.group_size(k * kept // prune.m) * prune.m // kept
    return quantizer.group_size(k)


def _kept_values(span: np.ndarray, prune: PruneSpec | None) -> np.ndarray:
    """The weights a group's parameters are fitted to: for n:m, the provisional survivors by magnitude."""
    if not (prune and prune.structured):
        return span
    whole = span[:, : span.shape[1] - span.shape[1] % prune.m]
    return whole[keep_nm(np.abs(whole), prune.n, prune.m)].reshape(span.shape[0], -1)


def _static_params(w: np.ndarray, quantizer: GroupQuantizedFormat, prune: PruneSpec | None, group: int) -> dict:
    return {g: quantizer.fit(_kept_values(w[:, s : s + group], prune))
            for g, s in enumerate(range(0, w.shape[1], group))}


def _unstructured_keep(w1: np.ndarray, d: np.ndarray, sparsity: float) -> np.ndarray:
    """SparseGPT's mask for a block: drop the `sparsity` share of lowest w²/d² over the whole block."""
    score = w1**2 / d[None, :] ** 2
    drop = int(score.size * sparsity)
    if drop == 0:
        return np.ones_like(w1, dtype=bool)
    threshold = np.partition(score.ravel(), drop - 1)[drop - 1]
    return score > threshold


def _nm_keep(cols: np.ndarray, d: np.ndarray, prune: PruneSpec) -> np.ndarray:
    """Keep the m − n largest w²/d² of each row's m columns."""
    return keep_nm(cols**2 / d[None, :] ** 2, prune.n, prune.m)
