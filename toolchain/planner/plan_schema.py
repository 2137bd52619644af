"""The plan file's schema (docs/planner.md, "Plan file schema"): what `edgec plan` writes and
`edgec compress --plan` / `edgec export --plan` read.

Every section is a model: unknown fields are refused, numbers are strict and finite, and
an error names the file and the field's path. `edgec_plan` is the schema version (1; a
plan without it is read as 1); a plan of another version is refused before its fields are.
Fields that a plan of version 1 may lack (the compression peak, solver notes, the latency
calibration) have defaults, and `plan_json` writes back only what the plan holds, so a
plan read and written again is the same JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, ValidationError, field_validator, model_validator

from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.passes import PASSES
from edgec.planner.schema import Count, Figure, Number, StrictModel, schema_error

PLAN_VERSION = 1
VERSION_FIELD = "edgec_plan"

Size = Annotated[int, Field(strict=True, ge=0)]  # bytes, parameters
Positive = Annotated[int, Field(strict=True, gt=0)]


class ModelSection(StrictModel):
    """The model planned for: `compress --plan` refuses other weights."""

    name: str
    weights_sha256: str
    task: Literal["causal-lm", "encoder"]
    planned_params: Size


class LatencyScalingSection(StrictModel):
    """The factors the device profile's runtime runs applied to the latency predictions
    (`edgec.planner.latency_scaling`; the key is `calibration` in plan files)."""

    decode: Number = 1.0
    prefill: Number = 1.0
    runs: Count = 0


class DeviceSection(StrictModel):
    """The device planned for and how its latencies were predicted."""

    name: str
    profile_sha256: str
    latency_model: str
    calibration: LatencyScalingSection = LatencyScalingSection()


class ConstraintsSection(StrictModel):
    """The limits given (absent where not given), those applied to the solver and its objective."""

    memory_bytes: Size | None = None
    latency_ms: Number | None = None
    avg_bits: Number | None = None
    max_loss: Number | None = None
    applied: dict[str, Figure]  # limit's origin (`--memory`, `device memory`, ...) -> the units' budget
    objective: Literal["loss", "latency"]


class SensitivitySection(StrictModel):
    """How sensitivity was measured (`edgec.planner.sensitivity.SensitivitySettings`)."""

    samples: Positive
    seq_len: Positive
    loss_samples: Positive
    loss_seq_len: Positive
    loss_every: Positive
    batch_size: Positive


class SettingsSection(StrictModel):
    """How the plan was made."""

    fuse: StrictBool
    include_head: StrictBool
    methods: Literal["auto", "rtn"]
    context: Positive
    prompt_tokens: Positive
    sensitivity: SensitivitySection
    loss: Literal["kl", "cosine distance"]


class TotalsSection(StrictModel):
    """The chosen plan's predicted totals."""

    weights_bytes: Size
    fixed_bytes: Size
    kv_cache_bytes: Size
    deployed_bytes: Size
    device_usable_bytes: Size
    avg_bits: Number
    predicted_loss: Number
    decode_ms: Number
    prefill_ms: Number
    compress_peak_bytes: Size | None = None  # set by `edgec plan` after the plan is made: host memory
    compress_device_peak_bytes: Size | None = None  # and GPU memory, when it computes on a GPU


class RunSection(StrictModel):
    """What making the plan cost: the sensitivity measurement's seconds and how much the cache answered."""

    sensitivity_seconds: Number
    candidates_measured: Count
    candidates_cached: Count
    compute_device: str


class LayerEntry(StrictModel):
    """One linear as `edgec compress --plan` applies it."""

    shape: list[Positive] = Field(min_length=2, max_length=2)
    unit: str
    format: str
    method: str
    bytes: Size

    @field_validator("format")
    @classmethod
    def _known_format(cls, text: str) -> str:
        parse_format(text)  # a FormatError is a ValueError: pydantic reports it at the field
        return text

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in PASSES:
            raise ValueError(f"unknown method {method!r} (known: {', '.join(PASSES)})")
        return method

    @model_validator(mode="after")
    def _fits(self) -> LayerEntry:
        parse_format(self.format).check_shape(tuple(self.shape))
        return self


class UnitEntry(StrictModel):
    """One unit (linears sharing a format): its choice and what it is predicted to cost."""

    unit: str
    layers: list[str] = Field(min_length=1)
    format: str
    method: str
    bytes: Size
    decode_ms: Number
    prefill_ms: Number
    loss: Number
    output_error: Number | None  # None where no input statistics exist (the head)
    tensor_error: Number


class CandidateEntry(StrictModel):
    """One candidate of a unit, as the solver saw it."""

    format: str
    method: str
    bytes: Size
    decode_ms: Number
    tensor: Number
    output: Number | None
    loss: Number
    measured: StrictBool  # False: the loss was predicted from the unit's probe measurement


class FrontierPoint(StrictModel):
    """Predicted size, loss and decode time of one choice."""

    bytes: Size
    loss: Number
    decode_ms: Number


class FrontierSection(StrictModel):
    """Least predicted loss at swept byte and latency budgets, and the uniform models' points."""

    bytes: list[FrontierPoint]
    latency: list[FrontierPoint]
    uniform: dict[str, FrontierPoint]


class Plan(StrictModel):
    """A plan file: identity, constraints, settings, totals, per-layer and per-unit choices, candidates, frontier."""

    edgec_plan: Count = PLAN_VERSION
    edgec_version: str
    model: ModelSection
    device: DeviceSection
    constraints: ConstraintsSection
    settings: SettingsSection
    totals: TotalsSection
    layers: dict[str, LayerEntry]
    units: list[UnitEntry]
    candidates: dict[str, list[CandidateEntry]]
    frontier: FrontierSection
    solver_notes: list[str] = []
    run: RunSection | None = None  # set by `edgec plan`; differs from run to run

    @field_validator("layers")
    @classmethod
    def _not_empty(cls, layers: dict[str, LayerEntry]) -> dict[str, LayerEntry]:
        if not layers:
            raise ValueError("empty: the plan compresses nothing")
        return layers


def validate_plan(data: object, origin: str) -> Plan:
    """`data` (a parsed plan file) as a `Plan`; raises one line naming `origin`, the field and why."""
    version = data.get(VERSION_FIELD, PLAN_VERSION) if isinstance(data, dict) else PLAN_VERSION
    if isinstance(version, int) and not isinstance(version, bool) and version != PLAN_VERSION:
        raise EdgecError(f"{origin}: field {VERSION_FIELD}: plan version {version} is not supported "
                         f"(this edgec reads version {PLAN_VERSION})")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise schema_error(exc, Plan, origin, "plan") from None


def plan_json(plan: Plan) -> dict:
    """The plan as JSON values, holding exactly the fields it was made or read with (what files and metadata store)."""
    return plan.model_dump(mode="json", exclude_unset=True)
