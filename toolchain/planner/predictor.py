"""The latency predictor fitted to a profile's measured kernel timings (HAT-style).

HAT trains a small regressor on latencies measured on the device and plans with it
instead of a data-sheet formula. A measured kernel (see `edgec.planner.profile_targets`)
reads the stored weight, decodes it (the reference into a float32 copy, the cpu and
Triton kernels in registers) and multiplies, so its time is a sum of a few costs, each
proportional to a count that the roofline already knows:

    seconds = c0                      fixed cost of the call (dispatch, allocations)
            + c1 * weight bytes       reading the stored buffers
            + c2 * n k                dequantizing: a fixed amount of work per weight
            + c3 * spill              the float32 weight's elements that do not fit in
                                      cache, written and read again by the matmul from
                                      memory: max(0, 4 n k - cache) / 4 (the reference's
                                      cost; a fused kernel's fit leaves c3 near zero)
            + c4 * 2 T n k            the matmul's flops
            + c5 * T (n + k)          activations in and out

The cache size in the spill term is a property of the host, not of a format: it is
chosen among 1, 2, 4, ... 64 MiB as the one whose fit leaves the smallest relative
residuals over all formats' training timings (on the measuring host, whose cores have
2 MiB of L2 each and share 32 MiB of L3, it comes out at 8 MiB).

The coefficients are fitted per format (each format's dequantization costs differently)
by non-negative least squares (`scipy.optimize.nnls`) on the *relative* error, i.e.
each row divided by its measured time, so a 50 us decode call weighs as much as a
50 ms prefill call, as the planner needs. Non-negativity keeps every term a cost, so the
model cannot go negative or extrapolate with a falling slope to shapes larger than those
measured. Why not a bigger regressor: there are some 50 measurements per format, the
time is additive in these counts by construction, and six non-negative numbers per
format can be read and checked by hand. One robust step makes the fit survive a few
calls slowed down by other work on the machine: after a first fit, points whose
relative residual exceeds four robust standard deviations (1.4826 x the median absolute
residual, at least 10 %) are dropped and the fit is repeated.

Held-out error: timings are grouped by weight shape (n, k); the shapes are sorted by
size, every 4th (indices 2, 6, 10, ...) is held out, the model is fitted on the rest and
the mean absolute percentage error of its predictions for the held-out shapes (all
formats and token counts there) is reported (`mape_heldout`, a fraction, and per
format). The model in use is then refitted on every timing.

A format without timings in the profile falls back to the profile's `Roofline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from edgec.core.formats import Format, parse_format
from edgec.planner.latency import Roofline
from edgec.planner.profiles import DeviceProfile, KernelTiming

FEATURES = ("call", "weight_bytes", "dequant", "dequant_spill", "flops", "activations")
"""Names of the predictor's terms, in coefficient order (see the module docstring)."""

CACHE_CANDIDATES = tuple(2**i * 2**20 for i in range(7))
"""Cache sizes tried for the spill term (1 to 64 MiB); the one that fits the training timings best is kept."""

HOLDOUT_EVERY = 4
_OUTLIER_SIGMAS = 4.0
_MIN_OUTLIER_SCALE = 0.10


def features(fmt: Format, n: int, k: int, tokens: int, cache_bytes: int) -> np.ndarray:
    """The counts the predictor's coefficients multiply, in `FEATURES` order."""
    nk = float(n) * float(k)
    spill = max(0.0, 4.0 * nk - cache_bytes) / 4.0
    return np.array([1.0, float(fmt.nbytes((n, k))), nk, spill, 2.0 * tokens * nk, float(tokens) * (n + k)])


def _design(timings: Sequence[KernelTiming], fmt: Format, cache_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([features(fmt, t.n, t.k, t.tokens, cache_bytes) for t in timings])
    y = np.array([t.seconds for t in timings])
    return x, y


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimizing sum(((x @ c - y) / y)^2), columns scaled for conditioning."""
    a = x / y[:, None]
    scale = np.abs(a).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(a / scale, np.ones(len(y)), maxiter=50 * a.shape[1])
    return coef / scale


def fit_format(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients for one format (relative-error NNLS, then once more without gross outliers)
    and the sum of squared relative residuals of the points kept."""
    coef = _nnls_relative(x, y)
    rel = (x @ coef - y) / y
    sigma = max(_MIN_OUTLIER_SCALE, 1.4826 * float(np.median(np.abs(rel - np.median(rel)))))
    keep = np.abs(rel) <= _OUTLIER_SIGMAS * sigma
    if keep.sum() >= x.shape[1] and not keep.all():
        coef = _nnls_relative(x[keep], y[keep])
        rel = (x @ coef - y) / y
    return coef, float(np.sum(rel[keep] ** 2))


class MeasuredLatency:
    """LatencyModel from per-format coefficients fitted to measured timings; the roofline elsewhere."""

    def __init__(self, coefficients: dict[str, np.ndarray], cache_bytes: int, fallback: Roofline | None) -> None:
        self.coefficients = coefficients
        self.cache_bytes = cache_bytes
        self.fallback = fallback

    def seconds(self, fmt: Format, n: int, k: int, tokens: int) -> float:
        coef = self.coefficients.get(str(fmt))
        if coef is None:
            if self.fallback is None:
                raise KeyError(f"no timings and no roofline for format {fmt}")
            return self.fallback.seconds(fmt, n, k, tokens)
        return float(features(fmt, n, k, tokens, self.cache_bytes) @ coef)


@dataclass(frozen=True)
class PredictorFit:
    """A fitted predictor and how well it predicts shapes it was not fitted on."""

    model: MeasuredLatency
    mape_heldout: float  # mean |predicted - measured| / measured over held-out shapes, a fraction
    mape_by_format: dict[str, float] = field(default_factory=dict)
    samples: int = 0  # timings the held-out evaluation fitted on
    heldout: int = 0  # timings it predicted
    heldout_shapes: tuple[tuple[int, int], ...] = ()


def heldout_shapes(timings: Iterable[KernelTiming], every: int = HOLDOUT_EVERY) -> list[tuple[int, int]]:
    """Every `every`-th shape (from index 2) of the measured (n, k) shapes sorted by size."""
    shapes = sorted({(t.n, t.k) for t in timings}, key=lambda s: (s[0] * s[1], s))
    return [s for i, s in enumerate(shapes) if i % every == min(2, every - 1)] if len(shapes) > 2 else []


def fit_model(by_format: dict[str, list[KernelTiming]], fallback: Roofline | None = None) -> MeasuredLatency:
    """Per-format coefficients, with the cache size (of `CACHE_CANDIDATES`) that fits these timings best."""
    fmts = {name: parse_format(name) for name, rows in by_format.items() if rows}
    best: tuple[float, int, dict[str, np.ndarray]] | None = None
    for cache in CACHE_CANDIDATES:
        fits = {name: fit_format(*_design(by_format[name], fmt, cache)) for name, fmt in fmts.items()}
        loss = sum(residual for _, residual in fits.values())
        if best is None or loss < best[0] * (1 - 1e-9):
            best = (loss, cache, {name: coef for name, (coef, _) in fits.items()})
    assert best is not None
    return MeasuredLatency(best[2], best[1], fallback)


def fit_timings(timings: Sequence[KernelTiming], fallback: Roofline | None = None) -> PredictorFit:
    """Held-out evaluation on whole shapes, then the model refitted on every timing."""
    fmts = {t.format: parse_format(t.format) for t in timings}
    held = set(heldout_shapes(timings))
    train: dict[str, list[KernelTiming]] = {name: [] for name in fmts}
    test: dict[str, list[KernelTiming]] = {name: [] for name in fmts}
    for t in timings:
        (test if (t.n, t.k) in held else train)[t.format].append(t)
    partial = fit_model(train, fallback)
    errors: dict[str, list[float]] = {}
    for name, rows in test.items():
        if not rows or name not in partial.coefficients:
            continue
        errors[name] = [abs(partial.seconds(fmts[name], t.n, t.k, t.tokens) - t.seconds) / t.seconds for t in rows]
    every = [e for errs in errors.values() for e in errs]
    full = fit_model({name: [t for t in timings if t.format == name] for name in fmts}, fallback)
    return PredictorFit(
        model=full,
        mape_heldout=float(np.mean(every)) if every else float("nan"),
        mape_by_format={name: float(np.mean(errs)) for name, errs in errors.items()},
        samples=sum(len(v) for v in train.values() if v),
        heldout=len(every),
        heldout_shapes=tuple(sorted(held, key=lambda s: (s[0] * s[1], s))),
    )


def fit_predictor(profile: DeviceProfile) -> PredictorFit:
    """The predictor for `profile`: fitted to its measured timings, the roofline for other formats."""
    if profile.measured is None:
        raise ValueError(f"profile {profile.name!r} has no measured timings to fit")
    return fit_timings(profile.measured.timings, Roofline(profile))
