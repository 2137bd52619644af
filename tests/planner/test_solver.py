"""The planner's solver is exact: it matches brute force on every small instance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgec.planner.solver import Infeasible, Option, minimum, solve, totals


def random_instance(rng: np.random.Generator, units: int, choices: int) -> list[list[Option]]:
    """Options where smaller storage costs more loss (as quantization does), with noise so ties are rare."""
    out = []
    for _ in range(units):
        size = rng.integers(1000, 5000)
        bits = np.sort(rng.choice([2, 3, 4, 6, 8, 16], size=choices, replace=False))
        out.append([Option(loss=float(rng.exponential(1.0) * 2.0 ** -b), bytes=int(size * b // 8),
                           latency=float(size * b / 8e6 + rng.uniform(0, 1e-4))) for b in bits])
    return out


def brute_force(options, objective, limits):
    best, best_choice = None, None
    for choice in itertools.product(*[range(len(o)) for o in options]):
        got = totals(options, list(choice))
        if all(got[r] <= v for r, v in limits.items()) and (best is None or got[objective] < best):
            best, best_choice = got[objective], list(choice)
    return best, best_choice


@pytest.mark.parametrize("seed", range(40))
def test_solver_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    options = random_instance(rng, units=int(rng.integers(3, 7)), choices=int(rng.integers(2, 5)))
    lo, hi = minimum(options, "bytes"), sum(max(o.bytes for o in opts) for opts in options)
    limits = {"bytes": float(rng.uniform(lo, hi))}
    if seed % 3 == 0:
        fast, slow = minimum(options, "latency"), sum(max(o.latency for o in opts) for opts in options)
        limits["latency"] = float(rng.uniform(fast, slow))
    objective = ("loss", "latency", "bytes")[seed % 3] if seed % 3 else "loss"
    if objective != "loss":
        limits["loss"] = float(rng.uniform(minimum(options, "loss"), sum(max(o.loss for o in opts) for opts in options)))
    best, _ = brute_force(options, objective, limits)
    if best is None:
        with pytest.raises(Infeasible):
            solve(options, objective, limits)
        return
    choice = solve(options, objective, limits)
    got = totals(options, choice)
    assert all(got[r] <= v * (1 + 1e-12) for r, v in limits.items())
    assert got[objective] == pytest.approx(best, rel=1e-9, abs=1e-15)


def test_solver_breaks_ties_by_the_next_resource():
    # Two options of equal loss: the smaller one must win, every time.
    options = [[Option(0.0, 100, 1.0), Option(0.0, 50, 1.0), Option(1.0, 10, 1.0)]] * 3
    assert solve(options, "loss") == [1, 1, 1]


def test_infeasible_memory_names_the_smallest_possible():
    options = [[Option(0.0, 100, 1.0), Option(1.0, 40, 1.0)], [Option(0.0, 60, 1.0), Option(2.0, 25, 1.0)]]
    with pytest.raises(Infeasible) as info:
        solve(options, "loss", {"bytes": 50})
    assert info.value.resource == "bytes" and info.value.nearest == 65 and not info.value.together


def test_infeasible_together_reports_the_reachable_figure_under_the_others():
    # Fast options are big: each limit alone can be met, not both.
    options = [[Option(0.0, 100, 1.0), Option(0.0, 10, 5.0)], [Option(0.0, 100, 1.0), Option(0.0, 10, 5.0)]]
    with pytest.raises(Infeasible) as info:
        solve(options, "loss", {"bytes": 50, "latency": 3.0})
    assert info.value.together
    assert info.value.resource == "bytes" and info.value.nearest == 200
