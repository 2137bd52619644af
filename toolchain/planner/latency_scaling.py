"""Latency scaling: the planner's latency predictions corrected by whole-model runtime measurements.

(Not to be confused with calibration, which in edgec means the activation statistics that the
passes and the sensitivity measurement collect on calibration text.)

The predictor (`edgec.planner.predictor`, or the roofline) prices each planned layer from
kernel timings; a whole model on the runtime also pays what no kernel timing sees (norms,
attention, the interpreter, threads waking). `edgec bench FILE --append-profile PROFILE`
measures a planned model on the device and records, in the profile, the plan's prediction
beside the measurement (`RuntimeRun`). The planner then scales its decode and prefill
predictions for that profile by the median measured/predicted ratio of the recorded runs:
one factor each, so the per-layer ranking of formats still comes from the predictor, and
the totals (and `--latency-ms` limits) come out in the runtime's real time. The median
keeps one run on a busy machine from moving the factor.
"""

from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass

from edgec.core.errors import EdgecError
from edgec.planner.profiles import DeviceProfile, RuntimeRun


@dataclass(frozen=True)
class LatencyScaling:
    """Factors applied to predicted decode and prefill seconds; 1.0 when the profile has no runs."""

    decode: float = 1.0
    prefill: float = 1.0
    runs: int = 0

    def to_json(self) -> dict:
        return {"decode": self.decode, "prefill": self.prefill, "runs": self.runs}


def latency_scaling(profile: DeviceProfile) -> LatencyScaling:
    """The median measured/predicted ratios of the profile's recorded runtime runs."""
    runs = profile.runtime
    if not runs:
        return LatencyScaling()
    return LatencyScaling(statistics.median(r.measured_decode_ms / r.predicted_decode_ms for r in runs),
                       statistics.median(r.measured_prefill_ms_per_token / r.predicted_prefill_ms_per_token
                                         for r in runs), len(runs))


def check_plan_device(plan: dict | None, profile: DeviceProfile, file: str) -> None:
    """Refuse a file whose plan is missing or was made for another device than `profile`."""
    if not plan:
        raise EdgecError(f"{file} carries no plan: --append-profile compares a plan's predictions with the "
                         "measurements (export with --plan)")
    device = plan["device"]["name"]
    if device != profile.name:
        raise EdgecError(f"{file} was planned for device {device!r}, not {profile.name!r}: plan for {profile.name} "
                         "(edgec plan --device PROFILE) to scale its profile's predictions")


def runtime_run(plan: dict | None, profile: DeviceProfile, file: str, backend: str, accuracy: str, threads: int,
                prompt_tokens: int, decode_tokens_per_s: float, prefill_tokens_per_s: float) -> RuntimeRun:
    """The record of one measurement of a planned file, checked against the profile it is appended to."""
    check_plan_device(plan, profile, file)
    if decode_tokens_per_s <= 0:
        raise EdgecError("--append-profile needs a decode measurement (--gen 2 or more)")
    made_with = plan["device"].get("calibration", {})
    totals = plan["totals"]
    return RuntimeRun(
        file=file, backend=backend, accuracy=accuracy, threads=threads,
        date=datetime.date.today().isoformat(), prompt_tokens=prompt_tokens,
        predicted_decode_ms=totals["decode_ms"] / made_with.get("decode", 1.0),
        measured_decode_ms=1e3 / decode_tokens_per_s,
        predicted_prefill_ms_per_token=totals["prefill_ms"] / plan["settings"]["prompt_tokens"] / made_with.get("prefill", 1.0),
        measured_prefill_ms_per_token=1e3 / prefill_tokens_per_s)
