"""AWQ (Lin et al., 2023): activation-aware input scales, folded into the previous op, then clipped RTN.

Per block, for every group of linears reading one input (q/k/v; o; gate/up; down in a
LLaMA block), the input scale s is searched on the calibration statistics
(`awq_math.search_scale`). Where the architecture allows, s is folded exactly:
the consumers' weights are multiplied by s and the producing op — a norm's weight and
bias, or the output rows of the previous linear (v_proj for o_proj, with one scale per
GQA value row; up_proj for down_proj) — is divided by it. Where it does not (an input
after a non-linearity, or a post-norm LayerNorm that also feeds the residual), s is kept
as an explicit input scale recorded for export. Each weight is then quantized by RTN
with AWQ's clip search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgec.calibration.sequential import BlockCalibration
from edgec.models.adapters import ScaleSource
from edgec.passes.awq_math import clipped_params, search_scale
from edgec.passes.base import Compressed, LayerConfig, Pass, is_quantized
from edgec.runtime.formats.grouping import to_groups


@dataclass(frozen=True)
class AWQOptions:
    """grid: points of α in [0, 1) for the scale search; clip: search clipping ratios too."""

    grid: int = 20
    clip: bool = True


class AWQ(Pass):
    """Activation-aware weight quantization for group-quantized formats."""

    name = "awq"

    def __init__(self, options: AWQOptions | None = None) -> None:
        self.options = options or AWQOptions()
        self._explicit: dict[str, torch.Tensor] = {}  # layer -> unfolded input scale
        self._hessian: dict[str, torch.Tensor] = {}  # layer -> Hessian of its (scaled) inputs
        self.chosen_alpha: dict[str, float] = {}  # layer -> α of its group's scale, for reports

    def check(self, layer: str, config: LayerConfig) -> None:
        if not is_quantized(config.format):
            raise self.refuse(layer, config, "AWQ scales weights before quantizing them; give an int, nf4 or fp8 format")
        if config.sparsity:
            raise self.refuse(layer, config, "unstructured sparsity needs a pruning method")

    def prepare_block(self, cal: BlockCalibration, layers: dict[str, LayerConfig]) -> None:
        self._explicit.clear()
        self._hessian.clear()
        refs = {ref.name: ref for ref in cal.linears}
        for group in cal.scale_groups:
            members = [name for name in group.consumers if name in layers]
            if not members:
                continue
            stats = cal.stats[members[0]]
            weights = [refs[m].weight().float().numpy() for m in members]
            rows = group.source.rows if group.source else None
            scale, alpha, _ = search_scale(weights, stats.hessian, stats.abs_mean, [layers[m].format for m in members],
                                           rows, self.options.grid)
            for m, w in zip(members, weights):
                self._hessian[m] = stats.hessian / torch.outer(scale, scale).double()
                self.chosen_alpha[m] = alpha
                if group.source is None:
                    self._explicit[m] = scale
                else:
                    refs[m].set_weight(torch.from_numpy(w * scale.numpy()[None, :]))
            if group.source is not None:
                divide_source(group.source, scale)

    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None, layer: str) -> Compressed:
        fmt = config.format
        scale = self._explicit.get(layer)
        w = weight * scale.numpy()[None, :] if scale is not None else weight
        if self.options.clip:
            params = clipped_params(w, self._hessian[layer], fmt)
        else:
            params = fmt.fit(to_groups(w, fmt.group_size(w.shape[1])))
        encoded = fmt.encode_with(w, params)
        deq = fmt.decode(encoded, w.shape)
        if scale is None:
            return Compressed(deq, encoded)
        return Compressed(deq / scale.numpy()[None, :], encoded, scale.numpy())


def divide_source(source: ScaleSource, scale: torch.Tensor) -> None:
    """Divide the outputs that feed the scaled inputs: a norm's weight and bias, or a linear's rows."""
    module = source.module
    rows = source.rows if source.rows is not None else torch.arange(scale.numel())
    per_row = scale  # GQA: rows repeat, each with the same scale, so gather-divide-scatter divides once
    with torch.no_grad():
        transposed = type(module).__name__ == "Conv1D"
        weight = module.weight
        if weight.dim() == 1:
            weight[rows] /= per_row
        elif transposed:
            weight[:, rows] /= per_row[None, :]
        else:
            weight[rows] /= per_row[:, None]
        if getattr(module, "bias", None) is not None:
            module.bias[rows] /= per_row
