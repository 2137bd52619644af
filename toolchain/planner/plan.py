"""`make_plan`: from a model, a device and constraints to a per-layer plan, its frontier and totals.

The plan minimises the summed per-unit loss (sensitivity) subject to the limits
given (`--memory`, `--latency-ms`, `--avg-bits`, `--max-loss`). With no limit on
bytes or latency, the default is the fastest plan that fits the device's usable
memory (weights plus the KV cache at `context`) and whose predicted loss stays
under `max_loss` (default `DEFAULT_MAX_LOSS`): a deployment wants speed first,
within a quality bound it can state. Formats are those the device runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edgec.core.errors import EdgecError
from edgec.core.version import __version__
from edgec.models.loading import LoadedModel
from edgec.passes.base import is_dense_float
from edgec.planner.deployment import ModelShape, fixed_seconds, model_shape, unit_seconds
from edgec.planner.latency import LatencyModel, latency_model
from edgec.planner.latency_scaling import latency_scaling
from edgec.planner.plan_schema import PLAN_VERSION, Plan
from edgec.planner.profiles import DeviceProfile
from edgec.planner.sensitivity import SensitivityCache, SensitivitySettings, SensitivityTable, measure_sensitivity
from edgec.planner.sizes import format_size
from edgec.planner.solver import Infeasible, Option, minimum, solve, totals
from edgec.planner.task_executors import TaskExecutor
from edgec.planner.units import Candidate, MethodPolicy, Unit, planning_units, unit_candidates

DEFAULT_MAX_LOSS = {"kl": 0.05, "cosine distance": 0.01}  # summed predicted loss of the default plan
FRONTIER_POINTS = 24


@dataclass(frozen=True)
class Constraints:
    """What the user asked for; None = not limited."""

    memory_bytes: int | None = None  # deployed weights (units plus everything else in 16 bit)
    latency_ms: float | None = None  # predicted decode time per token
    avg_bits: float | None = None  # stored bits per weight over the planned linears
    max_loss: float | None = None  # summed predicted loss (KL in nats for an LM)


@dataclass(frozen=True)
class PlanSettings:
    """How the plan is made: fusion, head, methods, workload and sensitivity calibration."""

    fuse: bool = True
    include_head: bool = True
    methods: MethodPolicy = "auto"
    context: int = 2048  # tokens the KV cache holds
    prompt_tokens: int = 512  # prefill length for the reported prefill latency
    sensitivity: SensitivitySettings = field(default_factory=SensitivitySettings)


@dataclass
class PlanInputs:
    """Everything the solver needs, computed once per (model, device, settings)."""

    units: list[Unit]
    candidates: dict[str, list[Candidate]]
    table: SensitivityTable
    shape: ModelShape
    decode: dict[tuple[str, str], float]  # (unit, candidate) -> seconds per token
    prefill: dict[tuple[str, str], float]
    fixed_decode: float
    fixed_prefill: float
    options: list[list[Option]] = field(default_factory=list)
    predictor: str = "roofline"

    @property
    def params(self) -> int:
        return sum(u.params for u in self.units)


def prepare(loaded: LoadedModel, profile: DeviceProfile, settings: PlanSettings, cache: SensitivityCache | None,
            progress: bool = True, latency: LatencyModel | None = None, device: torch.device | None = None,
            executor: TaskExecutor | None = None) -> PlanInputs:
    """Units, candidates, measured sensitivity (computed on `device`, None: the CPU; its tasks run by `executor`,
    None: in this process) and predicted costs of every (unit, candidate)."""
    units = planning_units(loaded, settings.fuse, settings.include_head)
    formats = profile.supported_formats()
    candidates = {u.label: unit_candidates(u, formats, settings.methods) for u in units}
    for unit in units:
        if not candidates[unit.label]:
            raise EdgecError(f"layer {unit.label}: none of {profile.name}'s formats ({', '.join(profile.formats)}) "
                             f"can store its shape {unit.shapes[0]}")
    table = measure_sensitivity(loaded, units, candidates, settings.sensitivity, cache, progress, device=device,
                               executor=executor)
    latency = latency or latency_model(profile)
    scale = latency_scaling(profile)
    shape = model_shape(loaded, units)
    predictor = "roofline" if profile.measured is None else "fitted to measured kernel timings"
    if scale.runs:
        predictor += f", scaled by {scale.runs} runtime run(s)"
    inputs = PlanInputs(units, candidates, table, shape, {}, {},
                        scale.decode * fixed_seconds(shape, profile, latency, 1, settings.context),
                        scale.prefill * fixed_seconds(shape, profile, latency, settings.prompt_tokens, settings.prompt_tokens),
                        predictor=predictor)
    for unit in units:
        row = []
        for cand in candidates[unit.label]:
            key = (unit.label, cand.key)
            inputs.decode[key] = scale.decode * unit_seconds(latency, unit, cand.format, 1)
            inputs.prefill[key] = scale.prefill * unit_seconds(latency, unit, cand.format,
                                                               1 if unit.is_head else settings.prompt_tokens)
            row.append(Option(table.get(unit, cand).loss, unit.nbytes(cand.format), inputs.decode[key]))
        inputs.options.append(row)
    return inputs


def _limits(inputs: PlanInputs, constraints: Constraints, profile: DeviceProfile,
            settings: PlanSettings) -> tuple[dict[str, float], dict[str, str], str]:
    """Solver limits on the units' totals, which option each came from, and the objective."""
    fixed_bytes = inputs.shape.fixed_bytes
    device_bytes = profile.usable_bytes - inputs.shape.kv_cache_bytes(settings.context)
    byte_limits = {"device memory": device_bytes - fixed_bytes}
    if constraints.memory_bytes is not None:
        byte_limits["--memory"] = constraints.memory_bytes - fixed_bytes
    if constraints.avg_bits is not None:
        byte_limits["--avg-bits"] = constraints.avg_bits * inputs.params / 8
    source = min(byte_limits, key=byte_limits.get)
    limits = {"bytes": byte_limits[source]}
    origin = {"bytes": source}
    if constraints.latency_ms is not None:
        limits["latency"] = constraints.latency_ms * 1e-3 - inputs.fixed_decode
        origin["latency"] = "--latency-ms"
    budgeted = constraints.memory_bytes is not None or constraints.latency_ms is not None or constraints.avg_bits is not None
    max_loss = constraints.max_loss
    if max_loss is None and not budgeted:
        max_loss = DEFAULT_MAX_LOSS[inputs.table.loss_name]
    if max_loss is not None:
        limits["loss"] = max_loss
        origin["loss"] = "--max-loss" if constraints.max_loss is not None else "the default loss bound"
    return limits, origin, "loss" if budgeted else "latency"


def _refusal(exc: Infeasible, origin: dict[str, str], inputs: PlanInputs, settings: PlanSettings) -> EdgecError:
    """The solver's refusal in the user's units: 'smallest possible is 61.2 MB'."""
    what = origin[exc.resource]
    with_others = " together with the other limits" if exc.together else ""
    if exc.nearest is None:
        return EdgecError(f"{what} cannot be met{with_others}: the other limits alone cannot be met")
    if exc.resource == "bytes":
        nearest = exc.nearest + inputs.shape.fixed_bytes
        if what == "--avg-bits":
            figure = f"{8 * exc.nearest / inputs.params:.2f} bits per weight"
        elif what == "device memory":
            figure = (f"{format_size(nearest)} of weights plus {format_size(inputs.shape.kv_cache_bytes(settings.context))} "
                      f"of KV cache at {settings.context} tokens")
        else:
            figure = format_size(nearest)
        return EdgecError(f"{what} cannot be met{with_others}: the smallest possible is {figure}")
    if exc.resource == "latency":
        return EdgecError(f"{what} cannot be met{with_others}: the fastest possible is "
                          f"{(exc.nearest + inputs.fixed_decode) * 1e3:.3f} ms per token")
    return EdgecError(f"{what} cannot be met{with_others}: the lowest possible predicted "
                      f"{inputs.table.loss_name} is {exc.nearest:.4g}")


def point(inputs: PlanInputs, choice: list[int]) -> dict:
    """Predicted bytes (all weights), loss and decode ms of a choice."""
    got = totals(inputs.options, choice)
    return {"bytes": int(got["bytes"]) + inputs.shape.fixed_bytes, "loss": got["loss"],
            "decode_ms": (got["latency"] + inputs.fixed_decode) * 1e3}


def uniform_choices(inputs: PlanInputs) -> dict[str, list[int]]:
    """The uniform models `edgec compress --format F [--include-head]` makes, as choices.

    Key `F@method`: every block unit in F, the head (if planned) in 16 bit; key
    `F@method+head`: the head in F too (by RTN), where the head can take F.
    """
    out = {}
    block_keys = [[c.key for c in inputs.candidates[u.label]] for u in inputs.units if not u.is_head]
    common = sorted(set.intersection(*map(set, block_keys))) if block_keys else []
    head = next((i for i, u in enumerate(inputs.units) if u.is_head), None)
    for key in common:
        choice = [keys.index(key) for keys in block_keys]
        if head is None:
            out[key] = choice
            continue
        head_cands = inputs.candidates[inputs.units[head].label]
        dense = [i for i, c in enumerate(head_cands) if c.format.family in ("fp16", "bf16")]
        if dense:
            out[key] = choice[:head] + [dense[0]] + choice[head:]
        same = [i for i, c in enumerate(head_cands) if str(c.format) == key.split("@")[0]]
        if same and not is_dense_float(head_cands[same[0]].format):
            out[f"{key}+head"] = choice[:head] + [same[0]] + choice[head:]
    return out


def frontier(inputs: PlanInputs, resource: str, notes: list[str] | None = None) -> list[dict]:
    """Least predicted loss at budgets of `resource` ('bytes' or 'latency') from its minimum to its maximum."""
    lo = minimum(inputs.options, resource)
    hi = sum(max(getattr(o, resource) for o in opts) for opts in inputs.options)
    points, seen = [], set()
    for budget in np.linspace(lo, hi, FRONTIER_POINTS):
        choice = solve(inputs.options, "loss", {resource: float(budget) * (1 + 1e-12)}, tie_break=False, notes=notes)
        if tuple(choice) not in seen:
            seen.add(tuple(choice))
            points.append(point(inputs, choice))
    return points


def make_plan(loaded: LoadedModel, profile: DeviceProfile, inputs: PlanInputs, constraints: Constraints,
              settings: PlanSettings) -> Plan:
    """The plan file's content (docs/planner.md, "The plan file"): identity, constraints, per-layer choices, totals,
    candidates, frontier."""
    limits, origin, objective = _limits(inputs, constraints, profile, settings)
    notes: list[str] = []  # where the solver's answer failed the check and the exact search ran
    try:
        choice = solve(inputs.options, objective, limits, notes=notes)
    except Infeasible as exc:
        raise _refusal(exc, origin, inputs, settings) from None
    picked = [inputs.candidates[u.label][i] for u, i in zip(inputs.units, choice)]
    layers, units = {}, []
    for unit, cand in zip(inputs.units, picked):
        key = (unit.label, cand.key)
        errors = inputs.table.get(unit, cand)
        entry = {"format": str(cand.format), "method": cand.method, "bytes": unit.nbytes(cand.format),
                 "decode_ms": inputs.decode[key] * 1e3, "prefill_ms": inputs.prefill[key] * 1e3,
                 "loss": errors.loss, "output_error": errors.output, "tensor_error": errors.tensor}
        units.append({"unit": unit.label, "layers": list(unit.layers), **entry})
        for name, shape in zip(unit.layers, unit.shapes):
            layers[name] = {"shape": list(shape), "unit": unit.label, "format": str(cand.format), "method": cand.method,
                            "bytes": cand.format.nbytes(shape)}
    got = totals(inputs.options, choice)
    shape = inputs.shape
    weights = int(got["bytes"]) + shape.fixed_bytes
    kv = shape.kv_cache_bytes(settings.context)
    prefill = sum(inputs.prefill[(u.label, c.key)] for u, c in zip(inputs.units, picked)) + inputs.fixed_prefill
    uniform = {key: point(inputs, c) for key, c in uniform_choices(inputs).items()}
    return Plan.model_validate({
        "edgec_plan": PLAN_VERSION,
        "edgec_version": __version__,
        "model": {"name": loaded.name, "weights_sha256": loaded.weights_hash, "task": loaded.task,
                  "planned_params": inputs.params},
        "device": {"name": profile.name, "profile_sha256": profile.digest(), "latency_model": inputs.predictor,
                   "calibration": latency_scaling(profile).to_json()},
        "constraints": {**{k: v for k, v in asdict(constraints).items() if v is not None},
                        "applied": {origin[r]: limits[r] for r in limits}, "objective": objective},
        "settings": {"fuse": settings.fuse, "include_head": settings.include_head, "methods": settings.methods,
                     "context": settings.context, "prompt_tokens": settings.prompt_tokens,
                     "sensitivity": asdict(settings.sensitivity), "loss": inputs.table.loss_name},
        "totals": {"weights_bytes": weights, "fixed_bytes": shape.fixed_bytes, "kv_cache_bytes": kv,
                   "deployed_bytes": weights + kv, "device_usable_bytes": profile.usable_bytes,
                   "avg_bits": 8 * got["bytes"] / inputs.params, "predicted_loss": got["loss"],
                   "decode_ms": (got["latency"] + inputs.fixed_decode) * 1e3, "prefill_ms": prefill * 1e3},
        "layers": layers,
        "units": units,
        "candidates": {u.label: [{"format": str(c.format), "method": c.method, "bytes": o.bytes,
                                  "decode_ms": o.latency * 1e3, **asdict(inputs.table.get(u, c))}
                                 for c, o in zip(inputs.candidates[u.label], opts)]
                       for u, opts in zip(inputs.units, inputs.options)},
        "frontier": {"bytes": frontier(inputs, "bytes", notes), "latency": frontier(inputs, "latency", notes),
                     "uniform": uniform},
        "solver_notes": notes,
    })
