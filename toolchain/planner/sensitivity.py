"""Per-unit sensitivity (MoFQ style): what each candidate format costs each unit in accuracy.

For every unit and candidate, on the calibration text:

* tensor error: ||W - W'||^2 / ||W||^2 over the unit's weights;
* layer-output error: tr(D H D^T) / tr(W H W^T) with D = W - W' and H = X^T X the
  unit's input statistics (exact for the calibration inputs, no extra forward);
* model-output loss with only that unit changed, the quantity the planner sums:
  for a causal LM the mean per-token KL(original || changed) in nats, for an
  encoder the mean per-token cosine distance of the last hidden states.

W' is what the candidate's method makes of W (GPTQ and SparseGPT from H), so the
table predicts what `edgec compress --plan` will do. The calibration pipeline runs
the float model block by block once: at block i every (unit, candidate) of the block
is a task (`edgec.planner.sensitivity_tasks`) that replaces the unit by the candidate,
runs blocks i.. from the cached hidden states of the loss windows, and puts the
original weights back; an executor (`edgec.planner.task_executors`) runs the block's
tasks, in this process or in forked workers. The loss windows are a sample
(by default 2 x 128 tokens) of the calibration text: the same tokens for every
candidate, so the comparison between candidates is paired. 16-bit formats are the
deployment baseline: their loss is not measured and counts as 0.

Sampling. One forward from block i to the logits per (unit, candidate) is most of the
cost, so the loss is measured for every unit under the *probe* (the candidate with the
fewest bits, whose large errors measure well) and under every candidate on every
`loss_every`-th unit (and always for the head); elsewhere it is predicted as
loss(u, c) = a_u * b_c * output_error(u, c), with a_u = loss/output error of unit u under
the probe and b_c the median, over the units where c was measured, of the measured loss
over a_u * output_error. The model-output loss of a unit is thus its layer-output error
scaled by how much the rest of the model amplifies errors at that unit (a_u), with a
per-format correction for the shape of the error (b_c). On SmolLM2 the per-unit
amplification ranked the same under every format measured (Spearman >= 0.95). The table
marks which entries were measured and reports the prediction's median error on the
measured entries; `loss_every=1` measures everything.

Results are cached per (model hash, candidate, units, settings): a second plan on the
same model reads them back, and a new format only measures itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgec.calibration.sequential import BlockCalibration, run_sequential
from edgec.calibration.vocab_bands import head_is_tied
from edgec.calibration.windows import calibration_windows
from edgec.core.output_files import atomic_output
from edgec.core.progress import announce_expected, progress_counter
from edgec.models.gguf_cache import cache_root
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, Pass
from edgec.passes.base import is_dense_float
from edgec.planner.duration import ModelWork, machine_speed, sensitivity_seconds, task_seconds
from edgec.planner.output_loss import OutputLoss
from edgec.planner.sensitivity_tasks import BlockContext, SensitivityTask
from edgec.planner.task_executors import InlineExecutor, TaskExecutor
from edgec.planner.units import HEAD_BLOCK, Candidate, Unit

SENSITIVITY_VERSION = 2  # 2: KL folded over vocabulary bands in float64


@dataclass(frozen=True)
class SensitivitySettings:
    """Calibration for sensitivity: Hessian windows, and the (smaller) loss windows."""

    samples: int = 16
    seq_len: int = 512
    loss_samples: int = 2
    loss_seq_len: int = 128
    loss_every: int = 4  # measure every candidate's loss on every n-th unit; 1 = on all
    batch_size: int = 2


@dataclass(frozen=True)
class UnitErrors:
    """A candidate's errors on one unit (see the module docstring); `measured`: loss measured, not predicted."""

    tensor: float
    output: float | None  # None where no input statistics exist (the head)
    loss: float
    measured: bool = True


@dataclass
class SensitivityTable:
    """(unit label, candidate key) -> errors, and how they were measured."""

    errors: dict[tuple[str, str], UnitErrors]
    settings: SensitivitySettings
    loss_name: str  # "kl" or "cosine distance"
    measured: int = 0  # candidates measured now (not read from the cache)
    cached: int = 0
    seconds: float = 0.0  # wall time of the measurement, cache reads included
    probe: str | None = None  # the candidate measured on every unit
    prediction_error: float | None = None  # median |predicted / measured - 1| over the measured losses

    @property
    def measured_losses(self) -> int:
        return sum(e.measured for e in self.errors.values())

    def get(self, unit: Unit, cand: Candidate) -> UnitErrors:
        return self.errors[(unit.label, cand.key)]


Raw = dict[str, tuple[float, float | None, float | None]]  # unit label -> (tensor, output, loss); None: not measured


class SensitivityCache:
    """One JSON file of raw measurements per (model, candidate, units, settings) under the edgec cache folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "sensitivity"

    def _path(self, loaded: LoadedModel, cand: Candidate, units: list[Unit], settings: SensitivitySettings) -> Path:
        key = {k: v for k, v in asdict(settings).items() if k != "loss_every"}  # sampling decides what is measured, not values
        material = json.dumps({"version": SENSITIVITY_VERSION, "model": loaded.weights_hash, "candidate": cand.key,
                               "units": [u.layers for u in units], "settings": key}, sort_keys=True)
        return self.root / f"{hashlib.sha256(material.encode()).hexdigest()[:40]}.json"

    def load(self, loaded: LoadedModel, cand: Candidate, units: list[Unit], settings: SensitivitySettings) -> Raw | None:
        try:
            data = json.loads(self._path(loaded, cand, units, settings).read_text())
            return {label: (float(t), None if o is None else float(o), None if v is None else float(v))
                    for label, (t, o, v) in data.items()}
        except (OSError, ValueError, TypeError):
            return None  # absent or unreadable: measure again

    def store(self, loaded: LoadedModel, cand: Candidate, units: list[Unit], settings: SensitivitySettings,
              raw: Raw) -> None:
        path = self._path(loaded, cand, units, settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(raw))


def probe_candidate(candidates: list[Candidate]) -> Candidate | None:
    """The candidate with the fewest stored bits (on a 1024 x 1024 weight): its errors are the largest."""
    lossy = [c for c in candidates if not is_dense_float(c.format)]
    return min(lossy, key=lambda c: (c.format.nbytes((1024, 1024)), c.key)) if lossy else None


def _loss_required(index: int, unit: Unit, cand: Candidate, unit_cands: list[Candidate], probe: Candidate | None,
                   every: int) -> bool:
    """Measured on the head, under the probe, on every `every`-th unit, and where no probe can predict it."""
    if is_dense_float(cand.format):
        return False
    return unit.is_head or cand == probe or probe not in unit_cands or index % every == 0


@torch.no_grad()
def measure_sensitivity(loaded: LoadedModel, units: list[Unit], candidates: dict[str, list[Candidate]],
                        settings: SensitivitySettings = SensitivitySettings(), cache: SensitivityCache | None = None,
                        progress: bool = True, passes: dict[str, Pass] | None = None,
                        device: torch.device | None = None, executor: TaskExecutor | None = None) -> SensitivityTable:
    """Errors of every unit under each of its candidates (`candidates[unit.label]`), computing on `device`
    (None: the CPU), the tasks run by `executor` (None: in this process); see the module docstring."""
    start = time.perf_counter()
    all_cands = sorted({c.key: c for cs in candidates.values() for c in cs}.values(), key=lambda c: c.key)
    probe = probe_candidate(all_cands)
    required = {(u.label, c.key): _loss_required(i, u, c, candidates[u.label], probe, settings.loss_every)
                for i, u in enumerate(units) for c in candidates[u.label]}
    table = SensitivityTable({}, settings, "kl" if loaded.task == "causal-lm" else "cosine distance",
                             probe=probe.key if probe else None)
    raw: dict[str, Raw] = {}
    missing: list[Candidate] = []
    for cand in all_cands:
        hit = cache.load(loaded, cand, units, settings) if cache else None
        mine = [u.label for u in units if cand in candidates[u.label]]
        if hit is not None and all(u in hit and (hit[u][2] is not None or not required[(u, cand.key)]) for u in mine):
            raw[cand.key] = hit
            table.cached += 1
        else:
            missing.append(cand)
    if missing:
        fresh = _measure(loaded, units, {u.label: [c for c in candidates[u.label] if c in missing] for u in units},
                         required, settings, passes, progress, device or torch.device("cpu"),
                         executor or InlineExecutor())
        for cand in missing:
            raw[cand.key] = fresh[cand.key]
            if cache:
                cache.store(loaded, cand, units, settings, fresh[cand.key])
        table.measured = len(missing)
    _fill(table, units, candidates, raw, probe)
    table.seconds = time.perf_counter() - start
    return table


def _measure(loaded: LoadedModel, units: list[Unit], todo: dict[str, list[Candidate]], required: dict[tuple[str, str], bool],
             settings: SensitivitySettings, passes: dict[str, Pass] | None, progress: bool,
             device: torch.device, executor: TaskExecutor) -> dict[str, Raw]:
    """Run the calibration pipeline once, handing each block's tasks (`todo[unit]` on its units) to `executor`."""
    model, adapter = loaded.model, loaded.adapter
    refs = {ref.name: ref for ref in adapter.linears(model)}
    passes = dict(passes or {})
    for cands in todo.values():
        for cand in cands:
            passes.setdefault(cand.method, PASSES[cand.method]())
    fresh: dict[str, Raw] = {c.key: {} for cands in todo.values() for c in cands}
    loss_ids, _ = calibration_windows(loaded.tokenizer, settings.loss_samples, settings.loss_seq_len)
    loss = OutputLoss(loaded, loss_ids, device)
    tasks_by_block: dict[int, list[SensitivityTask]] = {}
    for unit in units:
        tasks_by_block.setdefault(unit.block, []).extend(
            SensitivityTask(unit, cand, required[(unit.label, cand.key)]) for cand in todo[unit.label])
    expected = _expected_seconds(loaded, tasks_by_block, settings, device) if progress else {}
    bar = progress_counter(total=sum(len(v) for v in todo.values()), desc="sensitivity", unit="candidate",
                           enabled=progress, total_work=sum(expected.values()) or None)

    def run_tasks(context: BlockContext, index: int) -> None:
        for task, result in executor.run(context, tasks_by_block.get(index, [])):
            fresh[task.candidate.key][task.unit.label] = result
            bar.update(work=expected.get((task.unit.label, task.candidate.key), 0.0))

    def block_step(cal: BlockCalibration) -> None:
        run_tasks(BlockContext(cal, loss, refs, passes), cal.index)
        loss.advance(cal.index)

    ids, _ = calibration_windows(loaded.tokenizer, settings.samples, settings.seq_len)
    run_sequential(model, adapter, ids, block_step, settings.batch_size, progress=False, device=device)
    run_tasks(BlockContext(None, loss, refs, passes, head=adapter.head(model)), HEAD_BLOCK)
    bar.close()
    return fresh


def _expected_seconds(loaded: LoadedModel, tasks_by_block: dict[int, list[SensitivityTask]],
                      settings: SensitivitySettings, device: torch.device) -> dict[tuple[str, str], float]:
    """Announce on stderr, before the measurement, how long it is expected to take (`edgec.planner.duration`), and
    return each task's expected seconds by (unit, candidate), by which progress estimates the time left."""
    tasks = [t for block_tasks in tasks_by_block.values() for t in block_tasks]
    head = loaded.adapter.head(loaded.model)
    tied = head is not None and head_is_tied(loaded.model, head.module)
    work = ModelWork.of(loaded)
    speed = machine_speed(device, work.hidden, rows=settings.loss_samples * settings.loss_seq_len)
    announce_expected("sensitivity", sensitivity_seconds(work, tasks, settings, speed, tied),
                      f" for {len(tasks):,} (unit, candidate) tasks, {sum(t.loss_required for t in tasks):,} with a "
                      "loss forward")
    return {(t.unit.label, t.candidate.key): task_seconds(work, t, settings, speed, tied) for t in tasks}


def _fill(table: SensitivityTable, units: list[Unit], candidates: dict[str, list[Candidate]], raw: dict[str, Raw],
          probe: Candidate | None) -> None:
    """Measured losses as they are; the others predicted as a_u * b_c * output error (module docstring)."""
    amplification = {}
    if probe is not None:
        for u in units:
            t, o, v = raw[probe.key].get(u.label, (0.0, None, None))
            if v is not None and o:
                amplification[u.label] = v / o
    correction, misses = {}, []
    for key, entries in raw.items():
        ratios = [v / (amplification[label] * o) for label, (_, o, v) in entries.items()
                  if v is not None and o and amplification.get(label, 0) > 0]
        correction[key] = float(np.median(ratios)) if ratios else 1.0
        if key != (probe.key if probe else None):
            misses += [abs(r / correction[key] - 1) for r in ratios]
    table.prediction_error = float(np.median(misses)) if misses else None
    for u in units:
        for c in candidates[u.label]:
            t, o, v = raw[c.key][u.label]
            if v is None and not is_dense_float(c.format):
                a = amplification.get(u.label)
                if a is None:
                    raise AssertionError(f"unit {u.label} has no probe measurement to predict {c.key} from")
                table.errors[(u.label, c.key)] = UnitErrors(t, o, a * correction[c.key] * o, measured=False)
            else:
                table.errors[(u.label, c.key)] = UnitErrors(t, o, 0.0 if v is None else v, measured=v is not None)
