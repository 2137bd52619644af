"""SmoothQuant's migration of activation outliers into weights (Xiao et al., 2023), as array math.

For linears reading one input X, per input feature j:

    s_j = max|X_j|^α / max|W_:,j|^(1−α)        (the max over all consumers' weights)

and X·diag(s)⁻¹ · diag(s)·Wᵀ = X·Wᵀ exactly, so dividing the producing op's outputs by
s and multiplying the consumers' columns by s leaves the float model unchanged while
flattening the activation outliers that per-tensor 8-bit activations cannot hold.
"""

from __future__ import annotations

import torch


def smoothing_scale(act_absmax: torch.Tensor, weights: list[torch.Tensor], alpha: float,
                    rows: torch.Tensor | None = None) -> torch.Tensor:
    """s (K,) for one input; with `rows`, inputs produced by the same source row share the largest statistic."""
    act = act_absmax.float().clamp(min=1e-5)
    w_max = torch.stack([w.abs().amax(0) for w in weights]).amax(0).float().clamp(min=1e-5)  # (K,)
    if rows is not None:  # one scale per source row: take the maximum over the inputs it feeds
        size = int(rows.max()) + 1
        act = torch.zeros(size).scatter_reduce(0, rows, act, "amax", include_self=False)[rows]
        w_max = torch.zeros(size).scatter_reduce(0, rows, w_max, "amax", include_self=False)[rows]
    return (act.pow(alpha) / w_max.pow(1 - alpha)).clamp(min=1e-5)


def activation_scale(act_absmax: torch.Tensor, smoothing: torch.Tensor | None, qmax: float) -> float:
    """Static per-tensor activation scale: the largest smoothed |x| over calibration, mapped to qmax."""
    smoothed = act_absmax if smoothing is None else act_absmax / smoothing
    return float(smoothed.max()) / qmax
