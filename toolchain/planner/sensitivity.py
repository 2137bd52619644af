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
the float model block by block once: at block i every unit of the block is replaced
in turn by each candidate, blocks i.. are run from the cached hidden states of the
loss windows, and the original weights are put back. The loss windows are a sample
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

from edgec.calibration.placement import onloaded
from edgec.calibration.sequential import (
    BlockCalibration,
    capture_block_inputs,
    final_hidden,
    run_block,
    run_sequential,
)
from edgec.calibration.vocab_bands import BandedSoftmax, head_is_tied, logit_bands, rounded_embedding, rounded_rows
from edgec.calibration.windows import calibration_windows
from edgec.core.formats import Format
from edgec.core.output_files import atomic_output
from edgec.core.progress import progress_counter
from edgec.models.adapters import LinearRef
from edgec.models.gguf_cache import cache_root
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig, Pass
from edgec.passes.base import is_dense_float
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


class _OutputLoss:
    """The model-output loss of a changed model against the original on fixed windows.

    For a causal LM the original's logits are kept in vocabulary bands (`edgec.calibration.vocab_bands`)
    and a changed model's are folded against them band by band: KL(original || changed) without any
    whole log-softmax.
    """

    def __init__(self, loaded: LoadedModel, ids: torch.Tensor, device: torch.device) -> None:
        self.model, self.adapter, self.device = loaded.model, loaded.adapter, device
        self.causal = loaded.task == "causal-lm"
        self.blocks = self.adapter.blocks(self.model)
        self.ids = ids
        self.kinds = self.adapter.block_kinds(self.model)
        inputs, kwargs = capture_block_inputs(self.model, self.blocks, self.kinds, ids, ids.shape[0], device)
        self.hidden, self.kwargs = inputs[0], kwargs[0]  # the loss windows at the current block's input; kind -> arguments
        last = self._from_block(0, self.hidden)
        if self.causal:
            self.reference = [logits for _, logits in logit_bands(self.adapter, self.model, _positions(last), device)]
        else:  # (B, T, H); float64: 1 - cos is tiny
            self.reference = torch.nn.functional.normalize(self._final(last).double(), dim=-1)

    def _final(self, hidden: torch.Tensor) -> torch.Tensor:
        return final_hidden(self.adapter, self.model, hidden, self.device)

    def _from_block(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        for i in range(index, len(self.blocks)):
            with onloaded(self.blocks[i], self.device):
                hidden = run_block(self.blocks[i], hidden, self.kwargs[self.kinds[i]])
        return hidden

    def _loss(self, last: torch.Tensor, head_format: Format | None = None) -> float:
        """The loss of a model whose last block output `last` (its head's rows rounded to `head_format`)."""
        if not self.causal:
            out = torch.nn.functional.normalize(self._final(last).double(), dim=-1)
            return float((1 - (out * self.reference).sum(-1)).mean())
        positions = _positions(last)
        folded = BandedSoftmax(positions.shape[0], self.device)
        bands = logit_bands(self.adapter, self.model, positions, self.device, head_format)
        for (start, logits), reference in zip(bands, self.reference):
            folded.add(start, reference, logits)
        return float(folded.kl().mean())

    def changed_block(self, index: int) -> float:
        """Loss with the model as it is now, given that blocks before `index` are unchanged."""
        return self._loss(self._from_block(index, self.hidden))

    def changed_head(self, fmt: Format, tied: bool) -> float:
        """Loss with the head's rows rounded to `fmt` (and the embedding's, when `tied`), once every block has been
        advanced past: the blocks' outputs are then the unchanged model's, and only a tied embedding needs a full
        forward."""
        if not tied:
            return self._loss(self.hidden, fmt)
        with rounded_embedding(self.model, fmt, self.ids):
            inputs, _ = capture_block_inputs(self.model, self.blocks, self.kinds, self.ids, self.ids.shape[0],
                                             self.device)
        return self._loss(self._from_block(0, inputs[0]), fmt)

    def advance(self, index: int) -> None:
        """Move the cached hidden states past block `index` (unchanged)."""
        with onloaded(self.blocks[index], self.device):
            self.hidden = run_block(self.blocks[index], self.hidden, self.kwargs[self.kinds[index]])


def _positions(hidden: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) as (positions, H)."""
    return hidden.reshape(-1, hidden.shape[-1])


SQUARES_CHUNK = 1 << 22  # elements squared in float64 at once (a 1B model's head has 262M)


def _sum_squares(x: np.ndarray) -> float:
    """Σ x² in float64, a band of rows at a time, so that no float64 copy of a large weight is made."""
    rows = max(1, SQUARES_CHUNK // max(x.shape[-1], 1))
    return sum(float(np.square(x[i : i + rows], dtype=np.float64).sum()) for i in range(0, len(x), rows))


def _squared_norms(weights: list[np.ndarray], hessian: torch.Tensor) -> tuple[float, float]:
    """(sum of ||W||^2, sum of tr(W H W^T)) over a unit's weights (H float32): the denominators of its errors."""
    plain = sum(_sum_squares(w) for w in weights)
    return plain, sum(float(((torch.from_numpy(w) @ hessian) * torch.from_numpy(w)).double().sum()) for w in weights)


def _relative_errors(weights: list[np.ndarray], new: list[np.ndarray], hessian: torch.Tensor,
                     norms: tuple[float, float]) -> tuple[float, float | None]:
    """(tensor error, layer-output error) of a unit relative to `norms`.

    The products run in float32 (sums in float64): the errors are ratios that planning
    compares across formats, and a 16-bit format's ~1e-7 relative error is the only one
    float32 rounding could blur, a baseline whose loss counts as 0 anyway.
    """
    num_t = num_o = 0.0
    for w, q in zip(weights, new):
        d = w - q
        num_t += _sum_squares(d)
        d = torch.from_numpy(d)
        num_o += float(((d @ hessian) * d).double().sum())
    den_t, den_o = norms
    return num_t / max(den_t, 1e-30), (num_o / den_o if den_o else None)


def _apply(refs: list, weights: list[np.ndarray]) -> None:
    for ref, w in zip(refs, weights):
        ref.set_weight(torch.from_numpy(w))


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
                        device: torch.device | None = None) -> SensitivityTable:
    """Errors of every unit under each of its candidates (`candidates[unit.label]`), computing on `device`
    (None: the CPU); see the module docstring."""
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
                         required, settings, passes, progress, device or torch.device("cpu"))
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
             device: torch.device) -> dict[str, Raw]:
    """Run the calibration pipeline once, measuring `todo[unit]` on every unit."""
    model, adapter = loaded.model, loaded.adapter
    refs = {ref.name: ref for ref in adapter.linears(model)}
    passes = dict(passes or {})
    for cands in todo.values():
        for cand in cands:
            passes.setdefault(cand.method, PASSES[cand.method]())
    fresh: dict[str, Raw] = {c.key: {} for cands in todo.values() for c in cands}
    loss_ids, _ = calibration_windows(loaded.tokenizer, settings.loss_samples, settings.loss_seq_len)
    loss = _OutputLoss(loaded, loss_ids, device)
    bar = progress_counter(total=sum(len(v) for v in todo.values()), desc="sensitivity", unit="candidate",
                           enabled=progress)

    def measure(unit: Unit, cal: BlockCalibration) -> None:
        unit_refs = [refs[n] for n in unit.layers]
        weights = [ref.weight().float().numpy().copy() for ref in unit_refs]
        hessian = cal.stats[unit.layers[0]].hessian  # (K, K) float32
        norms = _squared_norms(weights, hessian)
        for cand in todo[unit.label]:
            done = passes[cand.method].compress_shared(weights, LayerConfig(cand.format, cand.method), cal, list(unit.layers))
            new = [d.weight for d in done]
            tensor, output = _relative_errors(weights, new, hessian, norms)
            value = None
            if required[(unit.label, cand.key)]:
                _apply(unit_refs, new)
                value = loss.changed_block(cal.index)
                _apply(unit_refs, weights)
            fresh[cand.key][unit.label] = (tensor, output, value)
            bar.update()

    by_block: dict[int, list[Unit]] = {}
    for unit in units:
        by_block.setdefault(unit.block, []).append(unit)

    def block_step(cal: BlockCalibration) -> None:
        for unit in by_block.get(cal.index, []):
            measure(unit, cal)
        loss.advance(cal.index)

    ids, _ = calibration_windows(loaded.tokenizer, settings.samples, settings.seq_len)
    run_sequential(model, adapter, ids, block_step, settings.batch_size, progress=False, device=device)
    head = adapter.head(model)
    for unit in by_block.get(HEAD_BLOCK, []):
        for cand in todo[unit.label]:
            fresh[cand.key][unit.label] = _head_errors(head, cand, required[(unit.label, cand.key)], loss)
            bar.update()
    bar.close()
    return fresh


def _head_errors(head: LinearRef, cand: Candidate, loss_required: bool,
                 loss: _OutputLoss) -> tuple[float, None, float | None]:
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
        changed += _sum_squares(band - cand.format.fake_quantize(band))
        sums += _sum_squares(band)
    value = loss.changed_head(cand.format, head_is_tied(loss.model, head.module)) if loss_required else None
    return changed / max(sums, 1e-30), None, value


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
