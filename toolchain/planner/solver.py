"""The exact choice: a multiple-choice knapsack solved as an integer program (HiGHS via scipy).

Every unit u takes exactly one option c, which costs loss[u][c], bytes[u][c] and
latency[u][c]. Minimise one of the three totals subject to upper limits on any of
them. The problem is NP-hard in general but small here (hundreds of units, a
handful of options), which HiGHS solves to proven optimality in milliseconds;
`tests/planner/test_solver.py` checks it against brute force.

A solve goes in four steps:

1. Conditioning. Options that no choice meeting a limit can contain (their cost plus the
   least every other unit needs exceeds it) are dropped, limits that no choice can exceed
   are dropped, and each limited resource is shifted by every unit's cheapest option and
   scaled by what is left of its limit, so that HiGHS sees rows of order 1. (KL losses
   span 1e-9 to 10 nats; scaled by their largest value, HiGHS's tolerances of about 1e-7
   of a row, and its habit of dropping coefficients below 1e-9, let answers exceed a
   0.05-nat bound.)
2. HiGHS solves the integer program.
3. Check: the answer's totals are summed in float64 against the limits. An answer over a
   limit by the solver's tolerance is solved again with that limit tightened by twice the
   overshoot (at most `_RETIGHTEN` times).
4. Exact fallback: where HiGHS gives no answer that passes the check, `exact_search`, a
   dynamic program over units that keeps every partial choice not dominated in the
   objective and the limited resources, finds the optimum or proves there is none. Its
   size grows with the instance; past `EXACT_STATE_LIMIT` partial choices it gives up and
   HiGHS's verdict stands. A `notes` list passed to `solve` receives one line saying so
   whenever the fallback ran.

Ties are broken deterministically: after the primary objective, a second solve
minimises the next resource (loss, then bytes, then latency) among the optima, so
the same inputs always give the same plan.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_array

from edgec.core.errors import EdgecError

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



EXACT_STATE_LIMIT = 50_000  # partial choices the exact fallback keeps per unit before it gives up
_RETIGHTEN = 3


def _within(total: float | np.ndarray, limit: float | np.ndarray) -> bool | np.ndarray:  # arrays: elementwise
    """The check every answer must pass: `total` meets `limit` up to float64 rounding of the sum."""
    return total <= limit * (1 + 1e-12) + 1e-12


def _meets(options: list[list[Option]], choice: list[int], limits: dict[str, float]) -> bool:
    got = totals(options, choice)
    return all(_within(got[r], limit) for r, limit in limits.items())


def _costs(options: list[list[Option]], resource: Resource) -> list[np.ndarray]:
    """Per unit, its options' cost in `resource`."""
    return [np.array([getattr(o, resource) for o in opts], dtype=np.float64) for opts in options]


def _allowed(options: list[list[Option]], limits: dict[str, float]) -> list[np.ndarray]:
    """Per unit, a mask of the options that some choice meeting every limit could contain."""
    masks = [np.ones(len(opts), dtype=bool) for opts in options]
    for resource, limit in limits.items():
        rows = _costs(options, resource)
        least = sum(float(r.min()) for r in rows)
        for mask, row in zip(masks, rows):
            mask &= _within(least - row.min() + row, limit)
    return masks


@dataclass(frozen=True)
class _Columns:
    """The allowed (unit, option) pairs as the integer program's columns."""

    unit: np.ndarray  # (n,) unit of each column
    option: np.ndarray  # (n,) option index within its unit

    @classmethod
    def of(cls, masks: list[np.ndarray]) -> _Columns:
        units = np.concatenate([np.full(int(m.sum()), u) for u, m in enumerate(masks)])
        options = np.concatenate([np.flatnonzero(m) for m in masks])
        return cls(units, options)

    def shifted(self, options: list[list[Option]], resource: Resource) -> tuple[np.ndarray, float]:
        """Each column's cost above its unit's cheapest allowed option, and the sum of those minima."""
        per_unit = _costs(options, resource)
        cost = np.array([per_unit[u][o] for u, o in zip(self.unit, self.option)])
        least = np.full(len(options), np.inf)
        np.minimum.at(least, self.unit, cost)
        return cost - least[self.unit], float(least.sum())


def _highs(options: list[list[Option]], objective: Resource, limits: dict[str, float],
           masks: list[np.ndarray], scale: float | None) -> list[int] | None:
    """HiGHS's answer on the conditioned program (module docstring, step 1), unchecked; None: it found none.

    The objective, shifted like the limits, is divided by `scale` (default: its largest coefficient).
    """
    cols = _Columns.of(masks)
    n = len(cols.unit)
    one_each = LinearConstraint(csr_array((np.ones(n), (cols.unit, np.arange(n))), shape=(len(options), n)), 1, 1)
    constraints = [one_each]
    for resource, limit in limits.items():
        cost, least = cols.shifted(options, resource)
        room = limit - least
        if room < 0:
            return None
        most = np.zeros(len(options))
        np.maximum.at(most, cols.unit, cost)
        if float(most.sum()) <= room:
            continue  # no choice can exceed it
        row_scale = room if room > 0 else 1.0
        constraints.append(LinearConstraint(cost[None, :] / row_scale, -np.inf, room / row_scale))
    c, _ = cols.shifted(options, objective)
    c = c / max(scale or float(np.abs(c).max()), 1e-300)
    with _quiet_stdout():
        result = milp(c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, 1),
                      options={"mip_rel_gap": 0.0, "presolve": True})
    if result.x is None:
        return None
    x = np.asarray(result.x)
    choice = [0] * len(options)
    best = np.full(len(options), -np.inf)
    for j in range(n):
        if x[j] > best[cols.unit[j]]:
            best[cols.unit[j]] = x[j]
            choice[cols.unit[j]] = int(cols.option[j])
    return choice


def _highs_checked(options: list[list[Option]], objective: Resource, limits: dict[str, float],
                   masks: list[np.ndarray], scale: float | None) -> tuple[list[int] | None, bool]:
    """HiGHS's answer once it passes the check, limits tightened by any overshoot (steps 2 and 3):
    (answer or None, whether HiGHS reported no feasible choice)."""
    tight = dict(limits)
    for _ in range(_RETIGHTEN + 1):
        choice = _highs(options, objective, tight, masks, scale)
        if choice is None:
            return None, True
        got = totals(options, choice)
        over = {r: got[r] - limit for r, limit in limits.items() if not _within(got[r], limit)}
        if not over:
            return choice, False
        for resource, excess in over.items():
            tight[resource] -= 2 * excess + 1e-12 * abs(limits[resource])
    return None, False


def _checked(options: list[list[Option]], objective: Resource, limits: dict[str, float],
             refine: bool) -> tuple[list[int] | None, bool]:
    """(HiGHS's answer that passes the check or None, whether HiGHS itself reported no feasible choice).

    HiGHS stops within an absolute gap of about 1e-6 of the objective's largest coefficient,
    coarse when losses span ten decades; so with `refine` the answer is refined by solving
    again among the options that could still improve on it, with the objective scaled by the
    answer's value (twice the time).
    """
    masks = _allowed(options, limits)
    if not all(m.any() for m in masks):
        return None, True
    choice, highs_says_none = _highs_checked(options, objective, limits, masks, None)
    rows = _costs(options, objective)
    shifted = [row - row[mask].min() for row, mask in zip(rows, masks)]
    for _ in range(2 if refine else 0):
        if choice is None:
            break
        spent = float(sum(s[i] for s, i in zip(shifted, choice)))
        if spent <= 0:
            break
        finer = [mask & (s <= spent) for mask, s in zip(masks, shifted)]
        better, _ = _highs_checked(options, objective, limits, finer, spent)
        if better is None or totals(options, better)[objective] >= totals(options, choice)[objective]:
            break
        choice = better
    return choice, highs_says_none


def _pareto(points: np.ndarray) -> np.ndarray:
    """Indices of the rows of `points` (n, d <= 3) that no other row is <= in every column (ties: the first kept)."""
    order = np.lexsort(points.T[::-1])  # by column 0, then 1, then 2
    p = points[order]
    if p.shape[1] == 1:
        return order[:1]
    if p.shape[1] == 2:
        before = np.minimum.accumulate(np.concatenate([[np.inf], p[:-1, 1]]))
        return order[p[:, 1] < before]
    keep, xs, ys = [], [], []  # staircase of kept (column 1, column 2): xs ascending, ys descending
    for i, (_, x, y) in enumerate(p):
        at = bisect.bisect_right(xs, x)
        if at and ys[at - 1] <= y:
            continue
        end = at
        while end < len(xs) and ys[end] >= y:
            end += 1
        xs[at:end], ys[at:end] = [x], [y]
        keep.append(i)
    return order[np.array(keep, dtype=int)]


def exact_search(options: list[list[Option]], objective: Resource,
                 limits: dict[str, float]) -> tuple[list[int] | None, bool]:
    """The optimum by dynamic programming over units, without floating-point tolerances beyond the check.

    Keeps, unit by unit, every partial choice that is not dominated in (objective, limited
    resources) and can still meet every limit. Returns (choice or None, complete): `complete`
    False means it gave up past `EXACT_STATE_LIMIT` partial choices and proves nothing.
    """
    dims = [objective] + [r for r in limits if r != objective]
    rows = {r: _costs(options, r) for r in dims}
    per_unit = [np.stack([rows[r][u] for r in dims], axis=1) for u in range(len(options))]  # (k_u, D)
    rest = np.zeros((len(options) + 1, len(dims)))  # least cost of units u.. in each dim
    for u in range(len(options) - 1, -1, -1):
        rest[u] = rest[u + 1] + per_unit[u].min(axis=0)
    caps = np.array([limits.get(r, np.inf) for r in dims])
    states = np.zeros((1, len(dims)))
    trail: list[tuple[np.ndarray, np.ndarray]] = []  # per unit: (parent state, option) of each state
    for u, cost in enumerate(per_unit):
        grown = (states[:, None, :] + cost[None, :, :]).reshape(-1, len(dims))
        parent = np.repeat(np.arange(len(states)), len(cost))
        option = np.tile(np.arange(len(cost)), len(states))
        bound = grown + rest[u + 1]
        keep = np.flatnonzero(np.all(_within(bound, caps), axis=1))
        keep = keep[_pareto(grown[keep])] if len(keep) else keep
        if len(keep) > EXACT_STATE_LIMIT:
            return None, False
        states = grown[keep]
        trail.append((parent[keep], option[keep]))
        if not len(states):
            return None, True
    best = int(np.lexsort(states.T[::-1])[0])
    choice = [0] * len(options)
    for u in range(len(options) - 1, -1, -1):
        parents, opts = trail[u]
        choice[u] = int(opts[best])
        best = int(parents[best])
    return choice, True


def _optimum(options: list[list[Option]], objective: Resource, limits: dict[str, float],
             notes: list[str] | None, refine: bool = True) -> list[int] | None:
    """The optimal choice under `limits` (None if there is none), from HiGHS or, failing it, the exact search."""
    choice, highs_says_none = _checked(options, objective, limits, refine)
    if choice is not None:
        return choice
    exact, complete = exact_search(options, objective, limits)
    if exact is not None and _meets(options, exact, limits):
        if notes is not None:
            why = "found no choice" if highs_says_none else "gave only answers over a limit"
            notes.append(f"the solver (HiGHS) {why} for minimising {objective} under "
                         f"{', '.join(f'{r} <= {v:.6g}' for r, v in limits.items())}; the exact search found the optimum")
        return exact
    if not complete and not highs_says_none and notes is not None:
        notes.append("the solver (HiGHS) gave only answers over a limit and the exact search was too large to finish")
    return None


def solve(options: list[list[Option]], objective: Resource = "loss", limits: dict[str, float] | None = None,
          tie_break: bool = True, notes: list[str] | None = None) -> list[int]:
    """The optimal option index per unit; raises `Infeasible` naming the limit that cannot be met.

    `tie_break=False` skips the lexicographic solves and the refinement (one HiGHS solve instead
    of up to six; the optimum then holds to about 1e-6 of the largest objective coefficient,
    enough for a frontier sweep).
    `notes`, if given, receives a line for every solve where HiGHS failed the check (module docstring).
    """
    limits = {r: float(v) for r, v in (limits or {}).items() if v is not None}
    choice = _optimum(options, objective, limits, notes, refine=tie_break)
    if choice is None:
        raise infeasibility(options, limits)
    if not tie_break:
        return choice
    for tie in (r for r in RESOURCES if r != objective):  # lexicographic: fix each optimum, then the next
        best = totals(options, choice)[objective]
        limits = {**limits, objective: best + abs(best) * _TIE_TOLERANCE}
        tied = _optimum(options, tie, limits, notes)
        if tied is None:
            break
        choice, objective = tied, tie
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


def minimum(options: list[list[Option]], resource: Resource, limits: dict[str, float] | None = None) -> float | None:
    """The least total of `resource` reachable under `limits` (None if they cannot be met at all)."""
    limits = {r: v for r, v in (limits or {}).items() if v is not None and r != resource}
    if not limits:
        return float(sum(min(getattr(o, resource) for o in opts) for opts in options))
    choice = _optimum(options, resource, limits, None)
    return None if choice is None else totals(options, choice)[resource]


def infeasibility(options: list[list[Option]], limits: dict[str, float]) -> Infeasible:
    """The error for limits that cannot be met: the first limit unreachable alone, else together.

    Every limit is then checked under the others; one whose least total under them exceeds
    it conflicts with them. Should each be reachable under the others (the solves disagree,
    which the check and the exact search are there to prevent), the error names the first
    limit and its least total, rather than failing an assertion.
    """
    for resource, limit in limits.items():
        alone = minimum(options, resource)
        if not _within(alone, limit):
            return Infeasible(resource, limit, alone, together=False)
    nearest = {}
    for resource, limit in limits.items():
        best = minimum(options, resource, {r: v for r, v in limits.items() if r != resource})
        if best is None or not _within(best, limit):
            return Infeasible(resource, limit, best, together=True)
        nearest[resource] = best
    first = next(iter(limits))
    return Infeasible(first, limits[first], nearest[first], together=True)
