"""The memory `edgec compress` will need, estimated before it runs: on the host and on the compute device.

Host. The resident size of a process that has just loaded the model the way compress does
(measured by the planner in its own process), plus:

* the weights compression rewrites, at the type they are held in: a loaded checkpoint is
  memory-mapped, so its pages become resident as they are read and private when written
  (the planned linears; every block's weights when a calibrated method onloads the blocks);
* the results (`Format.nbytes` of each layer): spilled to the output folder as they are made
  and mapped back in while the folder is written, so they count at the end, when the working
  set below is gone;
* with a calibrated method, the sequential calibration: one block in float32 when the
  weights are held in 16 bit or the device is a GPU (the block onloaded), and, when the
  device is the CPU, the calibration windows' hidden states (block inputs and outputs,
  float32), one block's input statistics (XᵀX in float32, mirrored in place) and the
  passes' working set: the Hessian's factor (one float64 array, converted to float32 in
  place) and about four float32 copies of the largest unit's weights.

Device (a GPU only): the float32 block, the hidden states and the statistics' float32
accumulators; the factor and the sweep run on the host (their numpy math), so on a GPU
they count there, with the Hessian the statistics hand over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from edgec.core.formats import Format, parse_format
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES
from edgec.planner.plan_schema import Plan

CALIBRATION_WINDOWS = 32  # `edgec compress` defaults
CALIBRATION_SEQ_LEN = 512
WORKSPACE_COPIES = 4


@dataclass(frozen=True)
class CompressPeak:
    """Estimated peak bytes of `edgec compress`: resident on the host, and allocated on a GPU (None on the CPU)."""

    host_bytes: int
    device_bytes: int | None


def compress_peak(loaded: LoadedModel, layers: Mapping[str, tuple[Format, str]], loaded_rss: int,
                  device: torch.device | None = None, samples: int = CALIBRATION_WINDOWS,
                  seq_len: int = CALIBRATION_SEQ_LEN) -> CompressPeak:
    """Peak memory of compressing `layers` (name -> (format, method)) on `device` (see the module docstring)."""
    on_gpu = device is not None and device.type != "cpu"
    refs = {ref.name: ref for ref in loaded.adapter.linears(loaded.model)}
    head = loaded.adapter.head(loaded.model)
    if head is not None:
        refs[head.name] = head
    held = {name: ref.module.weight.element_size() for name, ref in refs.items()}
    packed = sum(fmt.nbytes(refs[name].shape) for name, (fmt, _) in layers.items())
    calibrated = [name for name, (_, method) in layers.items() if PASSES[method].calibrated]
    blocks = loaded.adapter.blocks(loaded.model)
    if not calibrated:  # the results mapped back in at the end outweigh one layer's rounding
        rewritten = sum(refs[name].shape[0] * refs[name].shape[1] * held[name] for name in layers)
        return CompressPeak(loaded_rss + rewritten + packed, None)
    block_bytes = [sum(p.numel() * p.element_size() for p in block.parameters()) for block in blocks]
    block_params = [sum(p.numel() for p in block.parameters()) for block in blocks]
    outside = sum(refs[name].shape[0] * refs[name].shape[1] * held[name] for name in layers if refs[name].block < 0)
    rewritten = sum(block_bytes) + outside
    float_block = 4 * max(block_params)
    hidden = loaded.adapter.figures(loaded.model)["hidden_size"]
    activations = 2 * samples * seq_len * hidden * 4
    leader = {name: group[0] for group in loaded.adapter.fused_groups(loaded.model) for name in group}
    inputs_by_block: dict[int, dict[str, int]] = {}  # block -> {linear whose input statistics it reads: K}
    for name in calibrated:
        ref = refs[name]
        inputs_by_block.setdefault(ref.block, {})[leader.get(name, name)] = ref.shape[1]
    accumulators = max(sum(4 * k * k for k in ks.values()) for ks in inputs_by_block.values())
    largest_k = max(refs[name].shape[1] for name in calibrated)
    factor = 8 * largest_k**2  # the factor's float64 array (the float32 Hessian is among the accumulators)
    workspace = WORKSPACE_COPIES * 4 * max(refs[name].shape[0] * refs[name].shape[1] for name in calibrated)
    onload = float_block if (on_gpu or any(size != 4 for size in held.values())) else 0
    held_model = loaded_rss + rewritten
    working = factor + workspace
    if on_gpu:
        return CompressPeak(held_model + max(packed, working + 4 * largest_k**2), float_block + activations + accumulators)
    return CompressPeak(held_model + max(packed, working + onload + activations + accumulators), None)


def plan_layers(plan: Plan) -> dict[str, tuple[Format, str]]:
    """Every planned linear's (format, method), as `compress_peak` takes them."""
    return {name: (parse_format(unit.format), unit.method) for unit in plan.units for name in unit.layers}
