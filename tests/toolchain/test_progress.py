"""Progress is a bar on a terminal and whole log lines elsewhere (edgec.core.progress)."""

from __future__ import annotations

import io
import sys

from tqdm import tqdm

from edgec.core.progress import LogProgress, duration, progress_counter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_at_start_every_interval_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(None, 40, "sensitivity", "candidate", interval=30, file=out, clock=clock)
    clock.now += 10
    bar.update(5)  # the first items, slow enough to be worth an early estimate
    clock.now += 50
    bar.update(5)  # 60 s for 10 of 40: 3 minutes left
    bar.set_postfix_str("576x576")
    clock.now += 5
    bar.update(30)
    bar.close()
    bar.close()
    assert out.getvalue().splitlines() == [
        "sensitivity: 0/40 candidates to do",
        "sensitivity: 5/40 candidates, 10s elapsed (12 %), about 1m10s left",  # the first estimate, early
        "sensitivity: 10/40 candidates, 1m00s elapsed (25 %), about 3m00s left",
        "sensitivity: 40/40 candidates [576x576] in 1m05s",
    ]


def test_iterating_counts_and_closes_even_when_the_loop_breaks():
    out, clock = io.StringIO(), Clock()
    for i in LogProgress(range(3), None, "evaluating", "batch", interval=0, file=out, clock=clock):
        if i == 1:
            break
    lines = out.getvalue().splitlines()
    assert lines[0] == "evaluating: 0/3 batches to do" and lines[-1] == "evaluating: 1/3 batches in 0s"


def test_a_terminal_gets_tqdm_and_a_pipe_gets_log_lines(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert isinstance(progress_counter(total=3, desc="x", unit="y"), tqdm)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_counter(total=3, desc="x", unit="y"), LogProgress)
    silent = progress_counter(total=3, desc="x", unit="y", enabled=False)
    silent.update()
    silent.close()
    assert sys.stderr.getvalue().splitlines() == ["x: 0/3 ys to do"]


def test_durations_read_naturally():
    assert [duration(s) for s in (4.4, 65, 3599, 3725)] == ["4s", "1m05s", "59m59s", "1h02m"]


def test_the_last_update_leaves_the_end_to_the_closing_line():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(None, 2, "sensitivity", "candidate", interval=30, file=out, clock=clock)
    clock.now += 60
    bar.update(2)
    bar.close()
    assert out.getvalue().splitlines() == ["sensitivity: 0/2 candidates to do", "sensitivity: 2/2 candidates in 1m00s"]


def test_quick_first_items_wait_for_the_interval():
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(None, 40, "compressing", "block", interval=30, file=out, clock=clock)
    clock.now += 1
    bar.update()
    clock.now += 10
    bar.update()
    assert out.getvalue().splitlines() == ["compressing: 0/40 blocks to do"]


def test_expected_work_estimates_the_time_left_where_items_differ_in_cost(monkeypatch):
    """The first task of a sensitivity run carries a loss forward through every block, the rest are cheap: by count
    the time left would be 99 times the first task's; by expected work it is what the rest are expected to cost."""
    out, clock = io.StringIO(), Clock()
    bar = LogProgress(None, 100, "sensitivity", "candidate", interval=30, file=out, clock=clock, total_work=200.0)
    clock.now += 10
    bar.update(work=101.0)  # half the expected work in the first item
    assert out.getvalue().splitlines()[-1] == "sensitivity: 1/100 candidates, 10s elapsed (1 %), about 10s left"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    on_terminal = progress_counter(total=2, desc="x", unit="y", total_work=2.0)
    on_terminal.update(work=1.0)  # tqdm takes the same call and counts the item
    assert isinstance(on_terminal, tqdm) and on_terminal.n == 1
