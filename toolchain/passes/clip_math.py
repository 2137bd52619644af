"""Clip search for group-quantized formats (pure array math), used by AWQ and GPTQ.

Min-max group parameters waste grid points on rare large weights. Per output row and
group, the range the parameters are fitted to is shrunk by r ∈ {1, 0.95, …, 0.55} and the
r with the smallest output error of that group's partial product is kept: with
H = Σ x xᵀ over calibration inputs, the error of a change δ_g of the group's weights,
other groups held fixed, is δ_g H_gg δ_gᵀ. r = 1 (the min-max fit) is a candidate, so
the search never does worse than it on that measure.
"""

from __future__ import annotations

import numpy as np

from edgec.core.formats.base import GroupQuantizedFormat
from edgec.core.formats.grouping import n_groups, to_groups

CLIP_RATIOS = 1 - np.arange(10) / 20  # 1.0 (the min-max fit) down to 0.55


def clipped_params(w: np.ndarray, hessian: np.ndarray, fmt: GroupQuantizedFormat,
                   ratios: np.ndarray = CLIP_RATIOS) -> dict[str, np.ndarray]:
    """Group parameters (each (N, groups)) with the per-row, per-group clip ratio of least output error.

    Rows are searched a band at a time (each row's choice is its own): the search makes several
    float32 copies of what it searches, 0.7 GB at once for a 1B model's fused gate and up projections.
    """
    n, k = w.shape
    g = fmt.group_size(k)
    ng = n_groups(k, g)
    blocks = np.zeros((ng, g, g), dtype=np.float32)  # H's diagonal blocks, the last one zero-padded
    for i in range(ng):
        span = slice(i * g, min((i + 1) * g, k))
        width = span.stop - span.start
        blocks[i, :width, :width] = hessian[span, span]
    rows = max(1, CLIP_BAND_ELEMENTS // (ng * g))
    bands = [_clipped_rows(w[i : i + rows], blocks, fmt, ratios) for i in range(0, n, rows)]
    return {name: np.concatenate([band[name] for band in bands]) for name in bands[0]}


CLIP_BAND_ELEMENTS = 1 << 22  # weights one band of the clip search covers


def _clipped_rows(w: np.ndarray, blocks: np.ndarray, fmt: GroupQuantizedFormat,
                  ratios: np.ndarray) -> dict[str, np.ndarray]:
    """`clipped_params` of a band of rows, given H's diagonal blocks (ng, G, G)."""
    n, k = w.shape
    ng, g = blocks.shape[:2]
    groups = to_groups(w, g)  # (N, ng, G), last group padded by repetition
    valid = (np.arange(ng * g) < k).reshape(ng, g)
    padded = not valid.all()
    best_err = np.full((n, ng), np.inf)
    best: dict[str, np.ndarray] = {}
    extremes = np.stack([groups.min(-1), groups.max(-1)], axis=-1)  # (N, ng, 2): all a fit depends on
    for r in ratios:
        params = fmt.fit(extremes * r)  # = the fit of the groups clipped to [r·min, r·max]
        deq = fmt.scale(fmt.round(groups, {p: v[..., None] for p, v in params.items()}),
                        {p: v[..., None] for p, v in params.items()})
        delta = deq - groups
        if padded:
            delta *= valid[None]
        delta = delta.transpose(1, 0, 2)  # (ng, N, G)
        err = (np.matmul(delta, blocks) * delta).sum(-1).T  # (N, ng): δ_g H_gg δ_gᵀ per row and group
        better = err < best_err
        best_err = np.where(better, err, best_err)
        for p, v in params.items():
            best[p] = np.where(better, v, best[p]) if p in best else v
    return best
