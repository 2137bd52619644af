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
* Clip search: `clip_math.clipped_params`, shared with GPTQ.
"""

from __future__ import annotations

import numpy as np
import torch

from edgec.core.formats.base import GroupQuantizedFormat

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
