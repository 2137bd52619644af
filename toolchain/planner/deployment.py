"""What a model costs on a device apart from its units' weights: fixed bytes, KV cache, fixed latency.

The units' own bytes and latencies come from `Unit.nbytes` and the latency model;
this module adds everything else a deployment pays for, so totals compare with
the device's memory and a user's budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.core.formats import Format, parse_format
from edgec.models.loading import LoadedModel
from edgec.planner.latency import LatencyModel
from edgec.planner.profiles import DeviceProfile
from edgec.planner.units import Unit

FLOAT16 = parse_format("fp16")
OPS_PER_BLOCK = 6  # non-linear kernels per block besides the linears: 2 norms, rope, attention, activation, residual


@dataclass(frozen=True)
class ModelShape:
    """The figures of a model the cost of a plan depends on."""

    params_fixed: int  # parameters outside every unit (norms, biases, an untied embedding, an unplanned head)
    head_fixed: tuple[int, int] | None  # the head's shape when it is not a unit (it still runs every token)
    blocks: int
    kv_per_token: int  # key and value elements cached per token over all blocks (0 for encoders)
    causal: bool

    @property
    def fixed_bytes(self) -> int:
        """Bytes of everything outside the units, stored in 16 bit."""
        return 2 * self.params_fixed

    def kv_cache_bytes(self, context: int) -> int:
        """A 16-bit KV cache holding `context` tokens."""
        return 2 * self.kv_per_token * context


def model_shape(loaded: LoadedModel, units: list[Unit]) -> ModelShape:
    """Measure the parts of `loaded` that no unit covers."""
    model = loaded.model
    planned = {name for unit in units for name in unit.layers}
    covered = {id(m.weight) for n, m in model.named_modules() if n in planned}
    fixed = sum(p.numel() for p in model.parameters() if id(p) not in covered)  # parameters() yields tied ones once
    head = loaded.adapter.head(model)
    head_fixed = head.shape if head is not None and head.name not in planned else None
    blocks = len(loaded.adapter.blocks(model))
    kv = 0
    if loaded.task == "causal-lm":
        figures = loaded.adapter.figures(model)
        kv = 2 * blocks * figures["kv_heads"] * figures["head_dim"]
    return ModelShape(fixed, head_fixed, blocks, kv, loaded.task == "causal-lm")


def unit_seconds(latency: LatencyModel, unit: Unit, fmt: Format, tokens: int) -> float:
    """One unit's time: fused linears (same input) run as one kernel of their stacked rows."""
    k = unit.shapes[0][1]
    if all(shape[1] == k for shape in unit.shapes):
        return latency.seconds(fmt, sum(n for n, _ in unit.shapes), k, tokens)
    return sum(latency.seconds(fmt, n, kk, tokens) for n, kk in unit.shapes)


def fixed_seconds(shape: ModelShape, profile: DeviceProfile, latency: LatencyModel, tokens: int, context: int) -> float:
    """Time per call outside the units: the other kernels' dispatch, reading the KV cache, an unplanned head."""
    seconds = shape.blocks * OPS_PER_BLOCK * profile.dispatch_us * 1e-6
    if shape.causal:
        seconds += shape.kv_cache_bytes(context) / (profile.bandwidth_gbs * 1e9)
    if shape.head_fixed is not None:
        head_format = FLOAT16 if "fp16" in profile.formats else profile.supported_formats()[0]
        seconds += latency.seconds(head_format, *shape.head_fixed, tokens)
    return seconds
