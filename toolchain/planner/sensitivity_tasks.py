"""Sensitivity as independent tasks: one (unit, candidate) measured against its block's context.

The calibration pipeline runs the float model block by block once (`edgec.planner.sensitivity`).
At block i it makes a `BlockContext`: the block's input statistics, the loss windows' hidden
states at the block's input, and the passes. A task reads the context and the model, changes
its unit for the time of one loss forward and puts the original weights back, so the tasks of
a block are independent: an executor (`edgec.planner.task_executors`) may run them in any
order, in any process that holds the model and the context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from edgec.calibration.sequential import BlockCalibration
from edgec.calibration.vocab_bands import head_is_tied, rounded_rows
from edgec.models.adapters import LinearRef
from edgec.passes import LayerConfig, Pass
from edgec.planner.output_loss import OutputLoss
from edgec.planner.units import Candidate, Unit

TaskResult = tuple[float, float | None, float | None]  # (tensor, output, loss); None: none / not measured


@dataclass(frozen=True)
class SensitivityTask:
    """Measure `candidate` on `unit`: its errors always, its model-output loss when `loss_required`."""

    unit: Unit
    candidate: Candidate
    loss_required: bool


@dataclass
class BlockContext:
    """What the tasks of one block (or of the head, `cal` None) read.

    `loss` holds the loss windows' hidden states at the block's input; `refs` the model's linears by
    name. The original weights of a unit, in float32, and the denominators of its errors are made once
    per unit (`originals`) and dropped with `forget`.
    """

    cal: BlockCalibration | None
    loss: OutputLoss
    refs: dict[str, LinearRef]
    passes: dict[str, Pass]
    head: LinearRef | None = None
    _originals: dict[str, tuple[list[np.ndarray], tuple[float, float]]] = field(default_factory=dict)

    def originals(self, unit: Unit) -> tuple[list[np.ndarray], tuple[float, float]]:
        """The unit's weights as float32 arrays (views of the model's own when it holds float32 host tensors: a task
        never writes into them, see `applied`) and their `squared_norms`."""
        if unit.label not in self._originals:
            weights = [_original(self.refs[n]) for n in unit.layers]
            self._originals[unit.label] = weights, squared_norms(weights, self.hessian(unit))
        return self._originals[unit.label]

    def forget(self, unit: Unit) -> None:
        """Drop the unit's original weights (its last task is done)."""
        self._originals.pop(unit.label, None)

    def hessian(self, unit: Unit) -> torch.Tensor:
        """The unit's input statistics XᵀX, (K, K) float32."""
        return self.cal.stats[unit.layers[0]].hessian


def measure_task(context: BlockContext, task: SensitivityTask) -> TaskResult:
    """The task's (tensor error, layer-output error, loss or None), the model left as it was."""
    unit, cand = task.unit, task.candidate
    if unit.is_head:
        return head_errors(context.head, cand, task.loss_required, context.loss)
    weights, norms = context.originals(unit)
    config = LayerConfig(cand.format, cand.method)
    new = [d.weight for d in context.passes[cand.method].compress_shared(weights, config, context.cal, list(unit.layers))]
    tensor, output = relative_errors(weights, new, context.hessian(unit), norms)
    if not task.loss_required:
        return tensor, output, None
    with applied([context.refs[n] for n in unit.layers], new, weights):
        return tensor, output, context.loss.changed_block(context.cal.index)


SQUARES_CHUNK = 1 << 22  # elements of a weight (or a difference) reduced at once (a 1B model's head has 262M)


def _row_bands(x: np.ndarray) -> list[slice]:
    rows = max(1, SQUARES_CHUNK // max(x.shape[-1], 1))
    return [slice(i, i + rows) for i in range(0, len(x), rows)]


def sum_squares(x: np.ndarray) -> float:
    """Σ x² in float64, a band of rows at a time, so that no float64 copy of a large weight is made."""
    return sum(float(np.square(x[band], dtype=np.float64).sum()) for band in _row_bands(x))


def hessian_trace(x: np.ndarray, hessian: torch.Tensor) -> float:
    """tr(X H Xᵀ) for X (N, K) and H (K, K) float32: products in float32, sums in float64, a band of rows at a time
    (whole, the product and its float64 copy are 3x the weight: 0.4 GB for a 1B model's gate and up projections)."""
    total = 0.0
    for band in _row_bands(x):
        rows = torch.from_numpy(np.ascontiguousarray(x[band]))
        total += float(((rows @ hessian) * rows).sum(dtype=torch.float64))
    return total


def squared_norms(weights: list[np.ndarray], hessian: torch.Tensor) -> tuple[float, float]:
    """(sum of ||W||^2, sum of tr(W H W^T)) over a unit's weights (H float32): the denominators of its errors."""
    return sum(sum_squares(w) for w in weights), sum(hessian_trace(w, hessian) for w in weights)


def relative_errors(weights: list[np.ndarray], new: list[np.ndarray], hessian: torch.Tensor,
                    norms: tuple[float, float]) -> tuple[float, float | None]:
    """(tensor error, layer-output error) of a unit relative to `norms`, a band of rows of the difference at a time.

    The products run in float32 (sums in float64): the errors are ratios that planning
    compares across formats, and a 16-bit format's ~1e-7 relative error is the only one
    float32 rounding could blur, a baseline whose loss counts as 0 anyway.
    """
    num_t = num_o = 0.0
    for w, q in zip(weights, new):
        for band in _row_bands(w):
            d = w[band] - q[band]
            num_t += sum_squares(d)
            num_o += hessian_trace(d, hessian)
    den_t, den_o = norms
    return num_t / max(den_t, 1e-30), (num_o / den_o if den_o else None)


def _holds_float32_on_host(ref: LinearRef) -> bool:
    return ref.module.weight.dtype == torch.float32 and ref.module.weight.device.type == "cpu"


def _original(ref: LinearRef) -> np.ndarray:
    """A linear's weight (out, in) as float32: a view of the model's tensor where it is a float32 host tensor."""
    if _holds_float32_on_host(ref):
        return np.ascontiguousarray(ref.weight().numpy())  # passes never write into the weights they are given
    return ref.weight().float().numpy().copy()


@contextmanager
def applied(refs: list[LinearRef], weights: list[np.ndarray], originals: list[np.ndarray]) -> Iterator[None]:
    """Inside, the linears `refs` compute with `weights` ((out, in) float32). Where the model holds a float32 host
    tensor (a block onloaded on the CPU), the module's weight points at its new array for the time, so the
    original tensor, which its entry of `originals` views, is never written and no third copy of the unit is made;
    elsewhere the values are copied in and the original copied back."""
    swapped, copied = [], []
    for ref, w, original in zip(refs, weights, originals):
        if _holds_float32_on_host(ref):
            swapped.append((ref, ref.module.weight.data))
            new = torch.from_numpy(np.asarray(w, dtype=np.float32))
            ref.module.weight.data = new.t() if ref.transposed else new
        else:
            copied.append((ref, original))
            ref.set_weight(torch.from_numpy(w))
    try:
        yield
    finally:
        for ref, tensor in swapped:
            ref.module.weight.data = tensor
        for ref, original in copied:
            ref.set_weight(torch.from_numpy(original))


def head_errors(head: LinearRef, cand: Candidate, loss_required: bool,
                loss: OutputLoss) -> tuple[float, None, float | None]:
    """(tensor error, no output error, loss) of the head under `cand`, a band of rows at a time.

    The head's candidates are round-to-nearest (`edgec.planner.units.method_for`), and rows are
    independent in every format, so neither the head nor its rounding is ever made whole in float32
    (1 GB each for a 128k-token vocabulary).
    """
    if cand.method != "rtn":
        raise AssertionError(f"the head's candidate {cand.key} is not round-to-nearest")
    weight = head.module.weight
    changed = sums = 0.0
    step = max(1, SQUARES_CHUNK // weight.shape[1])
    for start in range(0, weight.shape[0], step):
        band = rounded_rows(weight, None, slice(start, start + step)).numpy()
        changed += sum_squares(band - cand.format.fake_quantize(band))
        sums += sum_squares(band)
    value = loss.changed_head(cand.format, head_is_tied(loss.model, head.module)) if loss_required else None
    return changed / max(sums, 1e-30), None, value
