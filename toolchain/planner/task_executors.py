"""Where sensitivity tasks run: in this process (on the CPU or a GPU), or in forked worker processes.

An executor takes one block's context and tasks (`edgec.planner.sensitivity_tasks`) and yields
each task with its result as it finishes, in any order. The planner records the results and
caches them; nothing else about the executor matters to it.

* `InlineExecutor` (the default): the tasks one after another, each using every core through
  torch's threads, or the GPU the context computes on.
* `ForkPoolExecutor`: the tasks spread over worker processes forked at each block, one torch
  thread each. Fork shares the model and the block's context copy-on-write, so only the tasks
  and their three numbers cross between processes. Each worker holds its own working set
  (a unit's float32 weights, the pass's factor and sweep), so memory grows with the workers.
  CPU only: a process that has initialised CUDA cannot fork.

A distributed engine is one more executor: docs/planner.md describes a Ray adapter.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from edgec.core.errors import EdgecError
from edgec.planner.sensitivity_tasks import BlockContext, SensitivityTask, TaskResult, measure_task


class TaskExecutor(Protocol):
    """Runs one block's sensitivity tasks."""

    def run(self, context: BlockContext,
            tasks: Sequence[SensitivityTask]) -> Iterator[tuple[SensitivityTask, TaskResult]]:
        """Yield every task with its result, in any order."""


class InlineExecutor:
    """The tasks in this process in their order, which is unit by unit (see the module docstring)."""

    def run(self, context: BlockContext,
            tasks: Sequence[SensitivityTask]) -> Iterator[tuple[SensitivityTask, TaskResult]]:
        for i, task in enumerate(tasks):
            yield task, measure_task(context, task)
            if i + 1 == len(tasks) or tasks[i + 1].unit != task.unit:
                context.forget(task.unit)  # its last task is done


_FORKED_CONTEXT: BlockContext | None = None  # the block's context, as forked workers inherit it


def _run_forked(task: SensitivityTask) -> tuple[SensitivityTask, TaskResult]:
    return task, measure_task(_FORKED_CONTEXT, task)


def _start_worker() -> None:
    torch.set_num_threads(1)  # the workers share the cores; one OpenMP thread each is also what is fork-safe


class ForkPoolExecutor:
    """The tasks over `workers` processes forked per block (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a pool needs 2 or more workers, not {workers}")
        self.workers = workers

    def run(self, context: BlockContext,
            tasks: Sequence[SensitivityTask]) -> Iterator[tuple[SensitivityTask, TaskResult]]:
        global _FORKED_CONTEXT
        if not tasks:
            return
        if context.cal is not None:
            for task in tasks:  # made once here, not once per worker
                context.originals(task.unit)
        _FORKED_CONTEXT = context
        try:
            with multiprocessing.get_context("fork").Pool(self.workers, initializer=_start_worker) as pool:
                yield from pool.imap_unordered(_run_forked, tasks)
        finally:
            _FORKED_CONTEXT = None


def task_executor(workers: int, device: torch.device) -> TaskExecutor:
    """The executor for `workers` processes computing on `device`: a pool only on the CPU with 2 or more."""
    if workers < 1:
        raise EdgecError(f"--workers {workers}: give 1 or more")
    if workers == 1:
        return InlineExecutor()
    if device.type != "cpu":
        raise EdgecError(f"--workers {workers}: worker processes compute on the CPU; on {device} give --workers 1")
    return ForkPoolExecutor(workers)
