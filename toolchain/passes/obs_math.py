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
in storage order. With `clip`, each group's parameters come from the clip search of
`clip_math` (the range shrink of least δ_g H_gg δ_gᵀ per row) instead of min-max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from edgec.core.formats.base import GroupQuantizedFormat
from edgec.passes.clip_math import clipped_params
from edgec.passes.pruning_math import keep_nm


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


def inverse_hessian_factor(hessian: np.ndarray, damp: float, perm: np.ndarray | None = None) -> np.ndarray:
    """Upper Cholesky factor U of the damped inverse Hessian (UᵀU = H⁻¹), of H with rows and columns in
    `perm`'s order when given; dead inputs (H_jj = 0) get H_jj = 1. Float64, C-contiguous.

    As GPTQ's reference: Cholesky of H, the inverse from that factor, the upper Cholesky of
    the inverse; here with LAPACK in place on one (K, K) float64 array, so that no more than
    that one array lives beside the caller's H (0.5 GB for a K = 8192 down projection; torch's
    functions took four). H (float32 or float64) is copied into it a band of rows at a time.
    """
    k = len(hessian)
    owned = np.empty((k, k), dtype=np.float64)
    for i in range(0, k, FACTOR_BAND):
        rows = hessian[perm[i : i + FACTOR_BAND]][:, perm] if perm is not None else hessian[i : i + FACTOR_BAND]
        owned[i : i + FACTOR_BAND] = rows
    a = owned.T  # column-major for LAPACK; H is symmetric, so this is H
    diagonal = np.arange(k)
    dead = a[diagonal, diagonal] == 0
    a[diagonal[dead], diagonal[dead]] = 1.0
    a[diagonal, diagonal] += damp * a[diagonal, diagonal].mean()
    factor, info = lapack.dpotrf(a, lower=1, clean=0, overwrite_a=1)
    if info == 0:
        inverse, info = lapack.dpotri(factor, lower=1, overwrite_c=1)
    if info == 0:
        _mirror_lower(inverse)
        # the lower factor L of the inverse (L Lᵀ = H⁻¹), column-major: read row-major it is Lᵀ = U
        lower, info = lapack.dpotrf(inverse, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"the damped Hessian is not positive definite (LAPACK info {info}); raise --damp")
    return lower.T


FACTOR_BAND = 512  # rows of H copied (and permuted) into the factor's array at once


def float32_in_place(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float64 matrix as float32 written over its own memory, each row into the first half of its
    own bytes: a (N, M) float32 view with a row stride of 8M bytes, where a copy would take half as much again.
    `a` holds garbage afterwards."""
    n, m = a.shape
    out = np.ndarray((n, m), dtype=np.float32, buffer=a, strides=(a.strides[0], 4))
    for i in range(n):
        out[i] = a[i]  # the row overlaps its source: numpy reads it whole before writing
    return out


def _mirror_lower(a: np.ndarray, band: int = 512) -> None:
    """Copy the lower triangle of the square `a` onto its upper triangle, in place, a band of rows at a time."""
    k = len(a)
    for i in range(0, k, band):
        j = min(i + band, k)
        a[i:j, j:] = a[j:, i:j].T
        block = a[i:j, i:j]
        upper = np.triu_indices(j - i, 1)
        block[upper] = block.T[upper]


def obs_sweep(
    w: np.ndarray,
    hessian: np.ndarray,
    quantizer: GroupQuantizedFormat | None = None,
    prune: PruneSpec | None = None,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    clip: bool = False,
) -> OBSResult:
    """Quantize (GPTQ), prune (SparseGPT) or both, with OBS error feedback.

    With pruning and quantization together, pruned weights are exactly zero and the
    quantizer's groups count kept weights only when `prune` is n:m (as the 2:4+F
    formats store them); otherwise groups are over all columns. `clip` applies to
    quantization without pruning.
    """
    if act_order and prune and prune.structured:
        raise ValueError("act_order cannot be combined with n:m pruning (groups of m must stay in column order)")
    if clip and prune:
        raise ValueError("clip search applies to quantization without pruning")
    h = np.asarray(hessian)
    w = np.array(w, dtype=np.float32)
    n, k = w.shape
    w[:, np.diag(h) == 0] = 0  # inputs never seen in calibration carry no information
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(k)
    w = w[:, perm]
    u = float32_in_place(inverse_hessian_factor(h, damp, perm if act_order else None))
    group = _group_span(quantizer, prune, k)
    block = -(-max(block_size, group) // group) * group if group else block_size  # whole groups per block
    params_by_group: dict[int, dict[str, np.ndarray]] = {}
    if quantizer and act_order:
        params_by_group = _static_params(w[:, np.argsort(perm)], h if clip else None, quantizer, prune, group)
    # Transposed (K, N) so that a column is a contiguous row and each rank-1 update a
    # contiguous slab. (torch's addr_ is faster in a tight loop but, called between numpy
    # steps, pays its thread pool's wake-up on every column.)
    wt = np.ascontiguousarray(w.T)
    keep = np.ones((k, n), dtype=bool)
    out = np.zeros_like(wt)
    codes = None
    update = np.empty((block, n), dtype=np.float32)
    column_params: dict[int, dict[str, np.ndarray]] = {}  # params_by_group as (N, 1) columns
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = wt[i1:i2]  # a view: these columns are final after this block
        err = np.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        if prune and not prune.structured:
            keep[i1:i2] = _unstructured_keep(w1.T, np.diag(u1), prune.sparsity).T
        for j in range(i2 - i1):
            col = i1 + j
            if prune and prune.structured and col % prune.m == 0:
                keep[col : col + prune.m] = _nm_keep(w1[j : j + prune.m].T, np.diag(u1)[j : j + prune.m], prune).T
            value = w1[j] * keep[col] if prune else w1[j]
            if quantizer:
                g = (perm[col] if act_order else col) // group
                if g not in params_by_group:  # natural order: fit at the group's first column
                    span = w1[j : j + group].T
                    h_span = h[col : col + group, col : col + group] if clip else None  # natural order here
                    params_by_group[g] = _fit(quantizer, _kept_values(span, prune), h_span)
                if g not in column_params:
                    column_params[g] = {name: v[:, None] for name, v in params_by_group[g].items()}
                p = column_params[g]
                q = quantizer.round(value[:, None], p)
                if codes is None:
                    codes = np.zeros((k, n), dtype=q.dtype)
                codes[col] = q[:, 0]
                value = quantizer.scale(q, p)[:, 0]
                if prune:
                    value *= keep[col]
            out[col] = value
            e = (w1[j] - value) / u1[j, j]
            rest = np.multiply(u1[j, j:, None], e[None, :], out=update[: i2 - col])
            w1[j:] -= rest
            err[j] = e
        if i2 < k:
            wt[i2:] -= u[i1:i2, i2:].T @ err
    inv = np.argsort(perm)
    out, keep = out[inv].T, keep[inv].T
    params = None
    if quantizer:
        codes = codes[inv].T
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


def _fit(quantizer: GroupQuantizedFormat, span: np.ndarray, h_span: np.ndarray | None) -> dict[str, np.ndarray]:
    """Parameters of one group (N, G) -> each (N,): clip-searched on its Hessian block when given, else min-max."""
    if h_span is None:
        return quantizer.fit(span)
    return {name: v[:, 0] for name, v in clipped_params(span, h_span, quantizer).items()}


def _static_params(w: np.ndarray, h: np.ndarray | None, quantizer: GroupQuantizedFormat, prune: PruneSpec | None,
                   group: int) -> dict:
    """Every group's parameters fitted once on the original weights (natural column order)."""
    if h is not None:  # clip search of all groups at once
        params = clipped_params(w, h, quantizer)
        return {g: {name: v[:, g] for name, v in params.items()} for g in range(next(iter(params.values())).shape[1])}
    return {g: quantizer.fit(_kept_values(w[:, s : s + group], prune)) for g, s in enumerate(range(0, w.shape[1], group))}


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
