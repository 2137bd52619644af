"""AWQ's searches (Lin et al., 2023) as pure array math over calibration statistics.

Both searches minimise the output error of linears on calibration inputs X. With
H = Σ x xᵀ the error of a weight change ΔW is exactly tr(ΔW H ΔWᵀ), so the
searches need the Hessian proxy instead of stored activations.

* Scale search: for a group of linears reading one input, s = mean|x|^α
  (normalised so that max·min = 1), α on a grid in [0, 1); each candidate quantizes
  W·diag(s) and measures ‖(Q(W·diag(s))·diag(s)⁻¹ − W) X‖². α = 0 is plain RTN, so
  the search never does worse than RTN on calibration data. The error is measured on
  at most `SEARCH_ROWS` evenly spaced output rows of each linear, which ranks the
  candidates as the full matrix does at a fraction of the cost.
* Clip search: per output row and group, shrink the range the group's parameters are
  fitted to by r ∈ {1, 0.95, …, 0.55} and keep the r with the smallest output error of
  that group's partial product, δ_g H_gg δ_gᵀ.
"""

from __future__ import annotations

import numpy as np
import torch

from edgec.runtime.formats.base import GroupQuantizedFormat
from edgec.runtime.formats.grouping import n_groups, to_groups


SEARCH_ROWS = 256


def output_error(delta: torch.Tensor, hessian: torch.Tensor) -> float:
    """tr(Δ H Δᵀ): squared output error of a weight change Δ (N, K) over the calibration inputs."""
    return float(((delta @ hessian) * delta).sum())


def candidate_scales(act_mean: torch.Tensor, alphas: np.ndarray, rows: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Input scales mean|x|^α per grid point; with `rows`, inputs sharing a source row share one scale."""
    stat = act_mean.double().clamp(min=1e-8)
    if rows is not None:  # average over the inputs produced by the same source row
        count = torch.zeros(int(rows.max()) + 1, dtype=torch.float64).index_add_(0, rows, torch.ones_like(stat))
        stat = (torch.zeros_like(count).index_add_(0, rows, stat) / count)[rows]
    out = []
    for alpha in alphas:
        s = stat.pow(float(alpha)).clamp(min=1e-4)
        out.append((s / (s.max() * s.min()).sqrt()).float())
    return out


def search_scale(weights: list[np.ndarray], hessian: torch.Tensor, act_mean: torch.Tensor,
                 formats: list[GroupQuantizedFormat], rows: torch.Tensor | None = None,
                 grid: int = 20) -> tuple[torch.Tensor, float, list[float]]:
    """The best input scale for linears sharing one input (each in its own format); its α; every candidate's error."""
    h = hessian.float()
    errors = []
    alphas = np.arange(grid) / grid
    candidates = candidate_scales(act_mean, alphas, rows)
    weights = [w[np.linspace(0, w.shape[0] - 1, min(SEARCH_ROWS, w.shape[0])).astype(int)] for w in weights]
    for s in candidates:
        total = 0.0
        for w, fmt in zip(weights, formats):
            scaled = w * s.numpy()[None, :]
            delta = torch.from_numpy(fmt.fake_quantize(scaled) / s.numpy()[None, :] - w)
            total += output_error(delta, h)
        errors.append(total)
    best = int(np.argmin(errors))
    return candidates[best], float(alphas[best]), errors


def clipped_params(w: np.ndarray, hessian: torch.Tensor, fmt: GroupQuantizedFormat,
                   ratios: np.ndarray = 1 - np.arange(10) / 20) -> dict[str, np.ndarray]:
    """Group parameters (each (N, groups)) with the per-row, per-group clip ratio of least output error."""
    n, k = w.shape
    g = fmt.group_size(k)
    ng = n_groups(k, g)
    groups = to_groups(w, g)  # (N, ng, G), last group padded by repetition
    valid = (np.arange(ng * g) < k).reshape(ng, g)
    h = np.zeros((ng * g, ng * g), dtype=np.float32)
    h[:k, :k] = hessian.float().numpy()
    blocks = np.stack([h[i * g : (i + 1) * g, i * g : (i + 1) * g] for i in range(ng)])  # (ng, G, G)
    best_err = np.full((n, ng), np.inf)
    best: dict[str, np.ndarray] = {}
    for r in ratios:
        lo, hi = groups.min(-1, keepdims=True), groups.max(-1, keepdims=True)
        params = fmt.fit(np.clip(groups, lo * r, hi * r) if r < 1 else groups)
        deq = fmt.scale(fmt.round(groups, {p: v[..., None] for p, v in params.items()}),
                        {p: v[..., None] for p, v in params.items()})
        delta = ((deq - groups) * valid[None]).transpose(1, 0, 2)  # (ng, N, G)
        err = (np.matmul(delta, blocks) * delta).sum(-1).T  # (N, ng): δ_g H_gg δ_gᵀ per row and group
        better = err < best_err
        best_err = np.where(better, err, best_err)
        for p, v in params.items():
            best[p] = np.where(better, v, best[p]) if p in best else v
    return best
