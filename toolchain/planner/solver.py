"""The exact choice: a multiple-choice knapsack solved as an integer program (HiGHS via scipy).

Every unit u takes exactly one option c, which costs loss[u][c], bytes[u][c] and
latency[u][c]. Minimise one of the three totals subject to upper limits on any of
them. The problem is NP-hard in general but small here (hundreds of units, a
handful of options), which HiGHS solves to proven optimality in milliseconds;
`tests/planner/test_solver.py` checks it against brute force.

Ties are broken deterministically: after the primary objective, a second solve
minimises the next resource (loss, then bytes, then latency) among the optima, so
the same inputs always give the same plan.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from edgec.errors import EdgecError

Resource = Literal["loss", "bytes", "latency"]
RESOURCES: tuple[Resource, ...] = ("loss", "bytes", "latency")
_TIE_TOLERANCE = 1e-9  # relative slack allowed on the primary objective in the tie-break solve


@dataclass(frozen=True)
class Option:
    """One way to store one unit and what it costs."""

    loss: float
    bytes: int
    latency: float


class Infeasible(EdgecError):
    """No choice meets every limit: `resource`'s `limit` cannot be met; `nearest` is the least
    total reachable (under the other limits if `together`; None if they alone cannot be met)."""

    def __init__(self, resource: Resource, limit: float, nearest: float | None, together: bool) -> None:
        self.resource, self.limit, self.nearest, self.together = resource, limit, nearest, together
        near = "none" if nearest is None else f"{nearest:.6g}"
        with_others = " together with the other limits" if together else ""
        super().__init__(f"{resource} limit {limit:.6g} cannot be met{with_others}: the smallest possible is {near}")


def totals(options: list[list[Option]], choice: list[int]) -> dict[str, float]:
    """Summed loss, bytes and latency of a choice (one option index per unit)."""
    picked = [opts[i] for opts, i in zip(options, choice)]
    return {"loss": sum(o.loss for o in picked), "bytes": sum(o.bytes for o in picked),
            "latency": sum(o.latency for o in picked)}


def _costs(options: list[list[Option]], resource: Resource) -> np.ndarray:
    return np.array([getattr(o, resource) for opts in options for o in opts], dtype=np.float64)


def _solve_once(options: list[list[Option]], objective: Resource, limits: dict[str, float]) -> list[int] | None:
    sizes = [len(opts) for opts in options]
    n = sum(sizes)
    rows, cols = [], []
    col = 0
    for u, size in enumerate(sizes):
        rows += [u] * size
        cols += range(col, col + size)
        col += size
    one_each = LinearConstraint(csr_array((np.ones(n), (rows, cols)), shape=(len(sizes), n)), 1, 1)
    constraints = [one_each]
    for resource, limit in limits.items():
        cost = _costs(options, resource)
        scale = max(abs(limit), float(np.abs(cost).max()), 1e-300)  # rows of order 1 for HiGHS's tolerances
        constraints.append(LinearConstraint(cost[None, :] / scale, -np.inf, limit / scale))
    c = _costs(options, objective)
    c = c / max(float(np.abs(c).max()), 1e-300)
    with _quiet_stdout():
        result = milp(c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, 1),
                      options={"mip_rel_gap": 0.0, "presolve": True})
    if result.x is None:
        return None
    x = np.round(result.x).astype(int)
    choice, start = [], 0
    for size in sizes:
        choice.append(int(np.argmax(x[start : start + size])))
        start += size
    return choice


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1: HiGHS's C++ code prints solver diagnostics there even with disp off."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _meets(options: list[list[Option]], choice: list[int], limits: dict[str, float]) -> bool:
    got = totals(options, choice)
    return all(got[r] <= limit * (1 + 1e-12) + 1e-12 for r, limit in limits.items())


def solve(options: list[list[Option]], objective: Resource = "loss", limits: dict[str, float] | None = None,
          tie_break: bool = True) -> list[int]:
    """The optimal option index per unit; raises `Infeasible` naming the limit that cannot be met.

    `tie_break=False` skips the lexicographic solves (a third of the time; for frontier sweeps).
    """
    limits = {r: float(v) for r, v in (limits or {}).items() if v is not None}
    choice = _solve_once(options, objective, limits)
    if choice is None or not _meets(options, choice, limits):
        raise infeasibility(options, limits)
    if not tie_break:
        return choice
    for tie in (r for r in RESOURCES if r != objective):  # lexicographic: fix each optimum, then the next
        best = totals(options, choice)[objective]
        limits = {**limits, objective: best + abs(best) * _TIE_TOLERANCE}
        tied = _solve_once(options, tie, limits)
        if tied is None or not _meets(options, tied, limits):
            break
        choice, objective = tied, tie
    return choice


def minimum(options: list[list[Option]], resource: Resource, limits: dict[str, float] | None = None) -> float | None:
    """The least total of `resource` reachable under `limits` (None if they cannot be met at all)."""
    limits = {r: v for r, v in (limits or {}).items() if v is not None and r != resource}
    if not limits:
        return float(sum(min(getattr(o, resource) for o in opts) for opts in options))
    choice = _solve_once(options, resource, limits)
    return None if choice is None else totals(options, choice)[resource]


def infeasibility(options: list[list[Option]], limits: dict[str, float]) -> Infeasible:
    """The error for limits that cannot be met: the first limit unreachable alone, else together."""
    for resource, limit in limits.items():
        alone = minimum(options, resource)
        if alone > limit * (1 + 1e-12):
            return Infeasible(resource, limit, alone, together=False)
    for resource, limit in limits.items():
        best = minimum(options, resource, {r: v for r, v in limits.items() if r != resource})
        if best is None or best > limit * (1 + 1e-12):
            return Infeasible(resource, limit, best, together=True)
    raise AssertionError("limits reported infeasible are each reachable")  # HiGHS and brute force disagree
