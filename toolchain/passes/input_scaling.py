"""What AWQ and SmoothQuant share: groups of linears reading one input, and exact scale folding.

Multiplying the consumers' weight columns by s and dividing the producing op's outputs
by s leaves the float model unchanged; `fold` does both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from edgec.calibration.sequential import BlockCalibration
from edgec.calibration.stats import InputStats
from edgec.models.adapters import LinearRef, ScaleGroup, ScaleSource
from edgec.passes.base import LayerConfig


@dataclass
class InputGroup:
    """Linears of one block that read the same input and that a pass was asked to compress."""

    group: ScaleGroup
    members: list[LinearRef]
    stats: InputStats

    @property
    def foldable(self) -> bool:
        return self.group.source is not None

    def weights(self) -> list[torch.Tensor]:
        return [ref.weight().float() for ref in self.members]

    def fold(self, scale: torch.Tensor) -> None:
        """Scale the members' input columns by `scale` and divide the source's outputs by it."""
        for ref in self.members:
            ref.set_weight(ref.weight().float() * scale[None, :])
        divide_source(self.group.source, scale)


def input_groups(cal: BlockCalibration, layers: dict[str, LayerConfig]) -> Iterator[InputGroup]:
    """The block's scale groups restricted to `layers`, skipping groups with none of them."""
    refs = {ref.name: ref for ref in cal.linears}
    for group in cal.scale_groups:
        members = [refs[name] for name in group.consumers if name in layers]
        if members:
            yield InputGroup(group, members, cal.stats[members[0].name])


def divide_source(source: ScaleSource, scale: torch.Tensor) -> None:
    """Divide the outputs that feed the scaled inputs: a norm's weight (with its offset) and bias, or a linear's rows.

    With GQA several inputs read one source row; they share one scale, so the
    gather-divide-scatter below divides each row once.
    """
    module = source.module
    rows = source.rows if source.rows is not None else torch.arange(scale.numel())
    with torch.no_grad():
        weight = module.weight
        if weight.dim() == 1:
            offset = source.weight_offset
            weight[rows] = (weight[rows] + offset) / scale.to(weight.dtype) - offset
        elif type(module).__name__ == "Conv1D":  # stored (in, out)
            weight[:, rows] /= scale[None, :]
        else:
            weight[rows] /= scale[:, None]
        if getattr(module, "bias", None) is not None:
            module.bias[rows] /= scale
