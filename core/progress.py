"""Progress of long work on stderr: a tqdm bar on a terminal, a plain log line at intervals elsewhere.

A bar redrawn with carriage returns is unreadable in a CI log or a file (`edgec plan ... 2> log`),
so when stderr is not a terminal the same progress is written as whole lines: one when the work
starts, one with the count, elapsed time and an estimate of the time left when the first
items done took at least `FIRST_ESTIMATE_S` (a block of a 1B model: the expected duration is
then known early), then one at most every `LOG_INTERVAL_S` seconds, and one when it ends.

Items of unequal cost (a sensitivity task with a loss forward from the first block costs many
without one) make a count a poor clock: given `total_work` and each item's expected `work`
(seconds from `edgec.planner.duration`, say), the time left is the elapsed time scaled by
the expected work left over the expected work done.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0
FIRST_ESTIMATE_S = 2.0  # work that ends sooner needs no estimate


def duration(seconds: float) -> str:
    """'45s', '3m05s' or '1h02m' (whole seconds below an hour)."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def announce_expected(step: str, seconds: float, detail: str = "") -> None:
    """The line a long step starts with, before any work: how long it is expected to take (on stderr)."""
    print(f"{step}: about {duration(seconds)} expected{detail}", file=sys.stderr, flush=True)


class LogProgress:
    """tqdm's `update`/`close`/iteration, written as log lines (see the module docstring)."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str,
                 interval: float = LOG_INTERVAL_S, file: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic, total_work: float | None = None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc = iterable, total, desc
        self.unit = unit if unit.endswith("s") else f"{unit}es" if unit.endswith(("ch", "sh", "x")) else f"{unit}s"
        self.postfix = ""
        self.interval, self.file, self.clock = interval, file, clock
        self.n, self.work, self.total_work = 0, 0.0, total_work
        self.start = self.last = clock()
        self.closed = False
        self._write(f"{self._count()} to do")

    def _count(self) -> str:
        count = f"{self.n:,}/{self.total:,}" if self.total is not None else f"{self.n:,}"
        return f"{count} {self.unit}" + (f" [{self.postfix}]" if self.postfix else "")

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        """Shown in the next line written (as tqdm's postfix)."""
        self.postfix = text

    def _write(self, text: str) -> None:
        out = self.file or sys.stderr
        print(f"{self.desc}: {text}", file=out, flush=True)

    def update(self, n: int = 1, work: float = 0.0) -> None:
        """Count `n` more done (of expected `work`, with `total_work`); write a line if `interval` has passed since
        the last one, or if these are the first items done and the work is slow enough to be worth an estimate."""
        first = self.n == 0
        self.n += n
        self.work += work
        now = self.clock()
        due = now - self.last >= self.interval or (first and now - self.start >= FIRST_ESTIMATE_S)
        if not due or (self.total is not None and self.n >= self.total):
            return  # the closing line reports the end
        self.last = now
        elapsed = now - self.start
        text = f"{self._count()}, {duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total:
            done = self.work / self.total_work if self.total_work and self.work > 0 else self.n / self.total
            text += f" ({100 * self.n / self.total:.0f} %), about {duration(elapsed * (1 - done) / done)} left"
        self._write(text)

    def close(self) -> None:
        """Write the closing line (once)."""
        if not self.closed:
            self.closed = True
            self._write(f"{self._count()} in {duration(self.clock() - self.start)}")

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_counter(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str,
                     enabled: bool = True, total_work: float | None = None) -> Any:
    """A progress counter over `iterable` or up to `total` on stderr: tqdm on a terminal, `LogProgress` elsewhere.

    Both support iteration, `update(n)`, `close()` and `with`; with `total_work`, `update(n, work=w)` (see the
    module docstring; tqdm counts items). `enabled=False` gives a silent one.
    """
    if not enabled or sys.stderr.isatty():
        return _ItemTqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr)
    return LogProgress(iterable, total, desc, unit, total_work=total_work)


class _ItemTqdm(tqdm):
    """tqdm taking `update(n, work=...)`: on a terminal the bar counts items."""

    def update(self, n: float | None = 1, work: float = 0.0) -> bool | None:
        return super().update(n)
