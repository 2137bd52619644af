"""The planner's solver is exact: it matches brute force on every small instance."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from edgec.planner import solver
from edgec.planner.solver import RESOURCES, Infeasible, Option, exact_search, minimum, solve, totals


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


def _spread_instance(rng: np.random.Generator, units: int, choices: int) -> list[list[Option]]:
    """Losses spanning ten decades as KL does (1e-10 for 8 bit to ~10 nats for 2 bit), latency falling with bits."""
    out = []
    for _ in range(units):
        size = int(rng.integers(1000, 5000))
        bits = np.sort(rng.choice([2, 3, 4, 6, 8, 16], size=choices, replace=False))
        out.append([Option(loss=float(10.0 ** rng.uniform(-10, 1)) if b < 16 else 0.0, bytes=size * int(b) // 8,
                           latency=float(size * b / 8e6 * rng.uniform(0.5, 1.5))) for b in bits])
    return out


def _limits_between(rng, options, resources) -> dict[str, float]:
    return {r: float(rng.uniform(minimum(options, r), sum(max(getattr(o, r) for o in opts) for opts in options)))
            for r in resources}


def _check_against_brute_force(options, objective, limits):
    best, _ = brute_force(options, objective, limits)
    if best is None:
        with pytest.raises(Infeasible) as info:
            solve(options, objective, limits)
        assert info.value.resource in limits
        assert exact_search(options, objective, limits) == (None, True)
        return info.value
    for choice in (solve(options, objective, limits), exact_search(options, objective, limits)[0]):
        got = totals(options, choice)
        assert all(got[r] <= v * (1 + 1e-12) + 1e-12 for r, v in limits.items())
        assert got[objective] == pytest.approx(best, rel=1e-9, abs=1e-15)
    return None


@pytest.mark.parametrize("seed", range(60))
def test_solver_and_exact_search_match_brute_force_under_two_limits(seed):
    rng = np.random.default_rng(1000 + seed)
    options = _spread_instance(rng, units=int(rng.integers(3, 7)), choices=int(rng.integers(2, 5)))
    objective = RESOURCES[seed % 3]
    others = [r for r in RESOURCES if r != objective]
    _check_against_brute_force(options, objective, _limits_between(rng, options, others))


@pytest.mark.parametrize("seed", range(30))
def test_limits_exactly_at_a_choices_totals_are_met(seed):
    # The default plan's failure: a loss bound met with equality by the optimum, losses over ten decades.
    rng = np.random.default_rng(2000 + seed)
    options = _spread_instance(rng, units=int(rng.integers(4, 7)), choices=int(rng.integers(3, 5)))
    anchor = totals(options, [int(rng.integers(len(o))) for o in options])
    objective = RESOURCES[seed % 3]
    limits = {r: anchor[r] for r in RESOURCES if r != objective}
    assert _check_against_brute_force(options, objective, limits) is None  # the anchor itself is feasible


CONFLICTING = [("loss", "bytes"), ("bytes", "loss"), ("loss", "latency"), ("latency", "loss")]  # fewer bits: less of one, more of the other


@pytest.mark.parametrize("seed", range(32))
def test_limits_infeasible_only_together_are_reported_with_the_figure_under_the_others(seed):
    first, second = CONFLICTING[seed % 4]
    objective = next(r for r in RESOURCES if r not in (first, second))
    rng = np.random.default_rng(3000 + seed)
    for _ in range(100):  # draw until the first limit raises the least reachable `second` above its least alone
        options = _spread_instance(rng, units=int(rng.integers(3, 6)), choices=int(rng.integers(2, 5)))
        limits = _limits_between(rng, options, [first])
        under, _ = brute_force(options, second, limits)
        alone = minimum(options, second)
        if under is not None and under > alone * (1 + 1e-6):
            break
    else:
        raise AssertionError("no instance with limits that conflict")
    limits[second] = float(rng.uniform(alone, under - (under - alone) * 1e-3))  # each reachable alone, not together
    error = _check_against_brute_force(options, objective, limits)
    assert error is not None and error.together
    expected, _ = brute_force(options, error.resource, {r: v for r, v in limits.items() if r != error.resource})
    assert error.nearest == pytest.approx(expected, rel=1e-9)


def test_an_answer_over_a_limit_falls_back_to_the_exact_search_and_says_so(monkeypatch):
    rng = np.random.default_rng(7)
    options = _spread_instance(rng, units=5, choices=4)
    limits = {"loss": totals(options, [1, 2, 0, 3, 1])["loss"]}
    best, _ = brute_force(options, "latency", limits)
    over = max((list(c) for c in itertools.product(*[range(len(o)) for o in options])),
               key=lambda c: totals(options, c)["loss"])
    monkeypatch.setattr(solver, "_highs", lambda *args: over)  # a solver whose answers always exceed the limit
    notes: list[str] = []
    choice = solve(options, "latency", limits, tie_break=False, notes=notes)
    assert totals(options, choice)["latency"] == pytest.approx(best, rel=1e-12)
    assert len(notes) == 1 and "exact search found the optimum" in notes[0]


def test_a_solver_that_finds_nothing_where_a_choice_exists_is_overruled(monkeypatch):
    options = _spread_instance(np.random.default_rng(8), units=4, choices=3)
    limits = {"bytes": totals(options, [0, 1, 2, 0])["bytes"]}
    best, _ = brute_force(options, "loss", limits)
    monkeypatch.setattr(solver, "_highs", lambda *args: None)
    notes: list[str] = []
    assert totals(options, solve(options, "loss", limits, notes=notes))["loss"] == pytest.approx(best)
    assert notes and "found no choice" in notes[0]


def test_the_exact_search_gives_up_past_its_state_limit(monkeypatch):
    options = _spread_instance(np.random.default_rng(9), units=8, choices=4)
    monkeypatch.setattr(solver, "EXACT_STATE_LIMIT", 3)
    assert exact_search(options, "latency", {"loss": 1e9, "bytes": 1e12}) == (None, False)


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["rtx4090-default", "rtx4060-laptop-default"])
def test_the_default_plans_that_once_ended_in_an_assertion_are_solved_to_the_exact_optimum(name):
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    options = [[Option(loss, int(size), latency) for loss, size, latency in unit] for unit in data["options"]]
    objective, limits = data["objective"], data["limits"]
    notes: list[str] = []
    choice = solve(options, objective, limits, notes=notes)
    got = totals(options, choice)
    assert all(got[r] <= v * (1 + 1e-12) + 1e-12 for r, v in limits.items())
    exact, complete = exact_search(options, objective, limits)
    assert complete and got[objective] == pytest.approx(totals(options, exact)[objective], rel=1e-9)
    assert notes == []  # HiGHS's own answer passes the check once the program is conditioned
