"""Device profiles: the schema, the shipped profiles and loading a user's YAML.

A profile says what a device can store and how fast it moves and multiplies it.
Every figure carries a source (a data sheet or a published measurement) in
`sources`; a profile written by `edgec profile` also carries measured kernel
timings, from which the latency predictor is fitted (see `edgec.planner.latency`).

Units: memory in bytes (YAML may say `24GB` or `8GiB`), bandwidth in GB/s
(10^9 bytes per second), peak matrix throughput in dense TFLOPS/TOPS (10^12
operations per second, one multiply-add counting as two), overheads in
microseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from edgec.core.errors import EdgecError, FormatError
from edgec.core.formats import Format, parse_format
from edgec.core.output_files import atomic_output
from edgec.devices import PROFILE_DIR
from edgec.planner.schema import Count, Number, StrictModel, schema_error
from edgec.planner.sizes import parse_size

Compute = Literal["fp32", "fp16", "bf16", "int8", "fp8", "int4"]
"""The arithmetic a matrix kernel runs in."""

_NATIVE_COMPUTE = {"fp16": "fp16", "bf16": "bf16", "int8": "int8", "fp8": "fp8", "int4": "int4"}
_FLOAT_COMPUTE = ("fp32", "fp16", "bf16")
_SOURCED_FIELDS = ("memory_bytes", "bandwidth_gbs", "peak_tops", "dispatch_us", "formats")

Bytes = Annotated[int, BeforeValidator(lambda v: parse_size(v, "memory_bytes"))]


class FormatPath(StrictModel):
    """How a device runs a linear stored in one format.

    `native`: the hardware multiplies in the format itself (int8 tensor cores, fp8 on
    Hopper/Ada); otherwise the kernel dequantizes to `compute` (a float type) and
    multiplies there. `compute` names the `peak_tops` entry that bounds the math.
    """

    compute: Compute
    native: bool


class KernelTiming(StrictModel):
    """One measured kernel call: y (tokens, n) = x (tokens, k) @ W(format)^T."""

    format: str
    n: Count = Field(gt=0)
    k: Count = Field(gt=0)
    tokens: Count = Field(gt=0)
    seconds: Number = Field(gt=0)


class Measurements(StrictModel):
    """Kernel timings measured on the device by `edgec profile`."""

    kernels: str  # which kernels were timed, e.g. "numpy reference (dequantize + matmul)"
    threads: Count = Field(gt=0)
    date: str
    timings: list[KernelTiming] = Field(min_length=1)


class RuntimeRun(StrictModel):
    """One `edgec bench --append-profile` run: a planned model measured by the runtime on this device.

    Predictions are the plan's own, divided by the latency scaling that plan was made with, so
    that runs recorded under different scalings compare with the same unscaled model.
    """

    file: str
    backend: str
    accuracy: str
    threads: Count = Field(gt=0)
    date: str
    prompt_tokens: Count = Field(gt=0)
    predicted_decode_ms: Number = Field(gt=0)  # per token
    measured_decode_ms: Number = Field(gt=0)
    predicted_prefill_ms_per_token: Number = Field(gt=0)
    measured_prefill_ms_per_token: Number = Field(gt=0)


class DeviceProfile(StrictModel):
    """One device: capacity, bandwidth, throughput per arithmetic, and the formats it runs."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    kind: Literal["gpu", "cpu", "npu"]
    description: str
    memory_bytes: Bytes
    usable_memory_fraction: Number = Field(gt=0, le=1)  # share a model may use (OS, display, runtime take the rest)
    bandwidth_gbs: Number = Field(gt=0)
    peak_tops: dict[Compute, Number] = Field(min_length=1)
    dispatch_us: Number = Field(ge=0)  # fixed cost of one kernel call (launch or dispatch)
    sparse24_speedup: Number = Field(default=1.0, ge=1)  # math speed-up of 2:4 sparsity where hardware has it
    formats: dict[str, FormatPath] = Field(min_length=1)
    sources: dict[str, str]
    measured: Measurements | None = None
    runtime: list[RuntimeRun] = Field(default_factory=list)  # end-to-end runs that calibrate the predictions

    @field_validator("peak_tops")
    @classmethod
    def _positive_peaks(cls, peaks: dict[str, float]) -> dict[str, float]:
        for compute, value in peaks.items():
            if value <= 0:
                raise ValueError(f"{compute}: must be positive, got {value}")
        return peaks

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: dict[str, FormatPath]) -> dict[str, FormatPath]:
        for text, path in formats.items():
            try:
                fmt = parse_format(text)
            except FormatError as exc:
                raise ValueError(str(exc)) from None
            if str(fmt) != text:
                raise ValueError(f"{text!r}: write it as {str(fmt)!r}")
            own = _NATIVE_COMPUTE.get(_value_family(fmt))
            if path.native and path.compute != own:
                raise ValueError(f"{text}: a native path computes in {own or 'a float type'}, not {path.compute}")
            if not path.native and path.compute not in _FLOAT_COMPUTE:
                raise ValueError(f"{text}: a dequantizing path computes in fp32, fp16 or bf16, not {path.compute}")
        return formats

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        for text, path in self.formats.items():
            if path.compute not in self.peak_tops:
                raise ValueError(f"formats.{text}: compute {path.compute!r} has no peak_tops entry")
        missing = [f for f in _SOURCED_FIELDS if not self.sources.get(f, "").strip()]
        if self.sparse24_speedup > 1 and not self.sources.get("sparse24_speedup", "").strip():
            missing.append("sparse24_speedup")
        if missing:
            raise ValueError(f"sources: no source given for {', '.join(missing)}")
        return self

    @property
    def usable_bytes(self) -> int:
        """Memory a deployed model (weights, KV cache, activations) may take."""
        return int(self.memory_bytes * self.usable_memory_fraction)

    def supported_formats(self) -> list[Format]:
        """The formats this device has a kernel path for, in profile order."""
        return [parse_format(text) for text in self.formats]

    def path(self, fmt: Format) -> FormatPath:
        """How this device runs `fmt`; raises if it has no kernel path for it."""
        try:
            return self.formats[str(fmt)]
        except KeyError:
            raise EdgecError(f"device {self.name!r} has no kernel path for format {fmt} "
                             f"(it runs: {', '.join(self.formats)})") from None

    def digest(self) -> str:
        """sha256 of the profile's canonical JSON: the plan records which profile it used."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _value_family(fmt: Format) -> str:
    """The family of the values a format stores: '2:4+int4:g128' stores int4, '2:4' fp16."""
    inner = getattr(fmt, "inner", None)
    return _value_family(inner) if inner is not None else fmt.family


class _ProfileLoader(yaml.SafeLoader):
    """YAML without YAML 1.1's base-60 integers, which would read the format `2:4` as 124."""


_ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ProfileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0x[0-9a-fA-F_]+|[-+]?(?:0|[1-9][0-9_]*))$"),
    list("-+0123456789"))


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship with edgec, sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(spec: str | os.PathLike[str]) -> DeviceProfile:
    """A shipped profile by name, or a YAML file by path; raises naming the file and field."""
    text = str(spec)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = PROFILE_DIR / f"{text}.yaml"
        if not path.is_file():
            raise EdgecError(f"unknown device {text!r} (shipped: {', '.join(shipped_profiles())}; "
                             f"or give the path of a YAML profile)")
    if not path.is_file():
        raise EdgecError(f"{path}: no such device profile file")
    try:
        data = yaml.load(path.read_text(), Loader=_ProfileLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdgecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise EdgecError(f"{path}: a device profile is a YAML mapping")
    profile = validate_profile(data, str(path))
    if profile.name != path.stem:
        raise EdgecError(f"{path}: field name: {profile.name!r} must be the file's name without .yaml ({path.stem!r}), "
                         f"the name plans and `--device` use")
    return profile


def validate_profile(data: dict, origin: str = "profile") -> DeviceProfile:
    """Validate a profile mapping; the error names the first bad field and why."""
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise schema_error(exc, DeviceProfile, origin, "profile") from None
    except EdgecError as exc:  # a size that does not parse
        raise EdgecError(f"{origin}: {exc}") from None


def save_profile(profile: DeviceProfile, path: Path) -> None:
    """Write `profile` as YAML, atomically (temporary file, then rename)."""
    data = profile.model_dump(mode="json", exclude_none=True)
    with atomic_output(path) as tmp:
        tmp.write_text(yaml.safe_dump(data, sort_keys=False, width=110))
