"""How long `edgec compress`, `edgec plan`'s sensitivity and `edgec eval` will take, estimated before any work.

The estimate counts the work's arithmetic and divides it by this machine's speed, measured
first in a few tenths of a second (`machine_speed`: float32 matrix products in torch on the
compute device and in numpy on the host, and each format's rounding on a sample):

| work | counted as | runs at |
|---|---|---|
| a forward of the blocks over T tokens | 2 P T for P parameters, plus 2 T S H per layer of attention over S positions | torch |
| a block's input statistics XᵀX | 2 T K² per input of width K | torch |
| round-to-nearest of an (N, K) weight | N K elements | the format's measured rounding rate |
| GPTQ / SparseGPT of (N, K) | `FACTOR_K3` K³ (the float64 factor) + `SWEEP_NK2` N K² (the lazy updates) | numpy |
|  | plus `SWEEP_ELEMENT_S` per weight (per-column rounding, clip search and in-block rank-1 updates) | seconds |
| a unit's layer-output error | 2 N K² twice (the weights' and the difference's) | torch |
| a sensitivity loss from block i | the forward of blocks i.. and the head over the loss windows | torch |
| eval | the forward of the model, and of its rounded copy, over the windows | torch |
| onloading a 16-bit block or head band | a copy to float32 and back per weight | measured |
| a sensitivity task's own overhead | `TASK_S` | seconds |

The sweep's three constants were fitted by least squares to `obs_sweep` timings (GPTQ as
compress runs it, int4:g128) on SmolLM2's and Llama 3.2 1B's shapes on a 2-core x86 machine
(`benchmarks/duration_estimate.py`; within 14 % on each of the six shapes there). Only the
per-weight term is in seconds, so it does not scale with a faster machine's measured rates.
The estimate is meant to tell a person whether to wait or to come back later, to within a
factor of about 1.5; the progress lines that follow give the measured rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgec.core.formats import Format
from edgec.models.loading import LoadedModel
from edgec.passes.awq import AWQOptions
from edgec.passes.base import is_dense_float

if TYPE_CHECKING:  # the planner's types, named only: evaluation and compression import this module too
    from edgec.planner.sensitivity import SensitivitySettings
    from edgec.planner.sensitivity_tasks import SensitivityTask
    from edgec.planner.units import Unit

FACTOR_K3 = 2.66  # numpy float32 FLOPs per K³ that the float64 Cholesky, inverse and Cholesky cost
SWEEP_NK2 = 6.65  # numpy float32 FLOPs per N K² of the lazy block updates
SWEEP_ELEMENT_S = 2.5e-7  # seconds per weight: per-column rounding, clip search and in-block updates
TASK_S = 0.05  # per sensitivity task: Python, dispatch and small products (fitted on SmolLM2's plans)
CALIBRATED_FORWARDS = 2  # compress runs each block twice: statistics, then the compressed block's outputs


@dataclass(frozen=True)
class MachineSpeed:
    """Measured rates: float32 matrix-product FLOP/s in torch (on the compute device, at the model's width) and in
    numpy (on the host), the seconds a 16-bit weight takes to be copied to float32 and back (onloading), and the
    seconds rounding one weight takes, per format (measured on first use)."""

    torch_flops: float
    numpy_flops: float
    onload_s: float
    rounding: Callable[[Format], float]


def _best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The fastest of `repeats` runs after a warm-up: the machine's rate, not its noise."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return max(best, 1e-9)


def machine_speed(device: torch.device, width: int = 1024, rows: int = 256) -> MachineSpeed:
    """Measure this machine's rates (see the module docstring) on `device`, torch's on a (rows, width) x
    (width, 4 width) product: the shape of a model of that width's MLP over the loss windows."""
    x, w = torch.randn(rows, width, device=device), torch.randn(width, 4 * width, device=device)

    def torch_product() -> None:
        (x @ w).sum().item()  # .item(): wait for a GPU

    torch_seconds = _best_seconds(torch_product)
    host = torch.randn(1024, 1024).numpy()
    numpy_seconds = _best_seconds(lambda: host @ host)
    held = torch.randn(1 << 22).to(torch.bfloat16)
    onload = _best_seconds(lambda: held.copy_(held.float())) / held.numel()
    sample = np.random.default_rng(0).standard_normal((64, 4096), dtype=np.float32)
    per_format: dict[str, float] = {}

    def rounding(fmt: Format) -> float:
        key = str(fmt)
        if key not in per_format:
            per_format[key] = 0.0 if is_dense_float(fmt) else _best_seconds(lambda: fmt.fake_quantize(sample), 2) / sample.size
        return per_format[key]

    return MachineSpeed(2 * rows * width * 4 * width / torch_seconds, 2 * 1024**3 / numpy_seconds, onload, rounding)


@dataclass(frozen=True)
class ModelWork:
    """What the estimate needs to know of a model: per-block parameters, widths, the head and how it is held."""

    block_params: list[int]
    hidden: int
    head_params: int  # the head's (vocabulary x hidden), 0 for an encoder
    held_16bit: bool  # onloading a block (or a band of the head) copies it to float32 and back

    @classmethod
    def of(cls, loaded: LoadedModel) -> ModelWork:
        """The figures of `loaded`."""
        blocks = loaded.adapter.blocks(loaded.model)
        hidden = loaded.adapter.figures(loaded.model)["hidden_size"]
        head = loaded.adapter.head(loaded.model)
        return cls([sum(p.numel() for p in b.parameters()) for b in blocks], hidden,
                   0 if head is None else head.shape[0] * head.shape[1],
                   next(loaded.model.parameters()).element_size() == 2)

    def forward_seconds(self, first: int, windows: int, seq_len: int, speed: MachineSpeed, head: bool) -> float:
        """Blocks `first`.. (and the head, when `head`) over `windows` x `seq_len` tokens, with their onloading."""
        tokens = windows * seq_len
        blocks = self.block_params[first:]
        flops = 2 * sum(blocks) * tokens + 2 * tokens * seq_len * self.hidden * len(blocks)
        onload = 2 * sum(blocks) * speed.onload_s if self.held_16bit else 0.0
        if head:
            flops += 2 * self.head_params * tokens
            onload += self.head_params * speed.onload_s / 2  # the bands are only read
        return flops / speed.torch_flops + onload


def sweep_seconds(n: int, k: int, speed: MachineSpeed) -> float:
    """GPTQ's or SparseGPT's sweep over an (n, k) weight (see the module docstring)."""
    return (FACTOR_K3 * k**3 + SWEEP_NK2 * n * k * k) / speed.numpy_flops + n * k * SWEEP_ELEMENT_S


def method_seconds(method: str, fmt: Format, n: int, k: int, tokens: int, speed: MachineSpeed) -> float:
    """Compressing an (n, k) weight (the stacked rows of linears sharing an input) by `method` to `fmt`."""
    rounding = n * k * speed.rounding(fmt)
    if method in ("gptq", "sparsegpt"):
        return sweep_seconds(n, k, speed)
    if method == "awq":
        # the scale search: one rounding and one forward of the unit per grid point
        return AWQOptions().grid * (rounding + 2 * n * k * tokens / speed.torch_flops)
    return rounding  # rtn, smoothquant, magnitude, wanda: elementwise over the weight


def statistics_seconds(widths: Iterable[int], tokens: int, speed: MachineSpeed) -> float:
    """XᵀX of every input width in `widths` over `tokens` calibration tokens."""
    return sum(2 * tokens * k * k for k in widths) / speed.torch_flops


Group = tuple[str, Format, int, int]  # (method, format, rows, width) of linears compressed together


def compress_groups(loaded: LoadedModel, layers: Mapping[str, tuple[Format, str]]) -> dict[int, list[Group]]:
    """The linears of `layers` (name -> (format, method)) as `compress` works on them: by block, those sharing an
    input (fused) and a configuration stacked into one group."""
    refs = {ref.name: ref for ref in loaded.adapter.linears(loaded.model)}
    head = loaded.adapter.head(loaded.model)
    if head is not None:
        refs[head.name] = head
    shared = {name: tuple(group) for group in loaded.adapter.fused_groups(loaded.model) for name in group}
    stacked: dict[tuple, list[str]] = {}
    for name, (fmt, method) in layers.items():
        stacked.setdefault((shared.get(name, (name,)), str(fmt), method), []).append(name)
    groups: dict[int, list[Group]] = {}
    for names in stacked.values():
        fmt, method = layers[names[0]]
        ref = refs[names[0]]
        groups.setdefault(ref.block, []).append((method, fmt, sum(refs[n].shape[0] for n in names), ref.shape[1]))
    return groups


def compress_seconds(work: ModelWork, groups: Mapping[int, list[Group]], samples: int, seq_len: int,
                     speed: MachineSpeed) -> float:
    """`compress` of `groups` (`compress_groups`) with `samples` x `seq_len` calibration tokens."""
    tokens = samples * seq_len
    calibrated = any(method not in ("rtn", "magnitude") for units in groups.values() for method, *_ in units)
    seconds = sum(method_seconds(m, f, n, k, tokens, speed) for units in groups.values() for m, f, n, k in units)
    if calibrated:
        seconds += CALIBRATED_FORWARDS * work.forward_seconds(0, samples, seq_len, speed, head=False)
        seconds += statistics_seconds([k for block, units in groups.items() if block >= 0 for *_, k in units],
                                      tokens, speed)
    return seconds


def sensitivity_seconds(work: ModelWork, tasks: Iterable[SensitivityTask], settings: SensitivitySettings,
                        speed: MachineSpeed, tied_head: bool) -> float:
    """The sensitivity measurement of `tasks`: one calibration pass over the blocks, each unit's norms and input
    statistics, and every task (`task_seconds`)."""
    tokens = settings.samples * settings.seq_len
    seconds = work.forward_seconds(0, settings.samples, settings.seq_len, speed, head=False)
    seconds += work.forward_seconds(0, settings.loss_samples, settings.loss_seq_len, speed, head=True)
    units: dict[str, Unit] = {}
    for task in tasks:
        units[task.unit.label] = task.unit
        seconds += task_seconds(work, task, settings, speed, tied_head)
    for unit in units.values():
        if not unit.is_head:  # the unit's own norms, and its input statistics
            n, k = sum(rows for rows, _ in unit.shapes), unit.shapes[0][1]
            seconds += 2 * n * k * k / speed.torch_flops + statistics_seconds([k], tokens, speed)
    return seconds


def task_seconds(work: ModelWork, task: SensitivityTask, settings: SensitivitySettings, speed: MachineSpeed,
                 tied_head: bool) -> float:
    """One (unit, candidate) task: its compression, its errors and, where required, its loss forward from the unit's
    block to the head (a head's from the top, or through the blocks when it is tied)."""
    unit, cand = task.unit, task.candidate
    n, k = sum(rows for rows, _ in unit.shapes), unit.shapes[0][1]
    seconds = TASK_S + method_seconds(cand.method, cand.format, n, k, settings.samples * settings.seq_len, speed)
    if task.loss_required:
        first = unit.block if not unit.is_head else 0 if tied_head else len(work.block_params)
        seconds += work.forward_seconds(first, settings.loss_samples, settings.loss_seq_len, speed, head=True)
    if not unit.is_head:
        seconds += 2 * n * k * k / speed.torch_flops  # the difference's layer-output error
    return seconds


def eval_seconds(work: ModelWork, rounded: Iterable[Group], windows: int, seq_len: int, compare: bool,
                 speed: MachineSpeed) -> float:
    """`eval`: the model over `windows` x `seq_len` tokens, head included, and, when `compare`, its copy with the
    `rounded` groups rounded to nearest."""
    forward = work.forward_seconds(0, windows, seq_len, speed, head=True)
    if not compare:
        return forward
    return 2 * forward + sum(method_seconds("rtn", fmt, n, k, 0, speed) for _, fmt, n, k in rounded)
