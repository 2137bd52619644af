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
from edgec.core.formats.grouping import to_groups
from edgec.passes.awq_math import search_scale
from edgec.passes.base import Compressed, LayerConfig, Pass, is_quantized
from edgec.passes.clip_math import clipped_params
from edgec.passes.input_scaling import input_groups


@dataclass(frozen=True)
class AWQOptions:
    """grid: points of α in [0, 1) for the scale search; clip: search clipping ratios too."""

    grid: int = 20
    clip: bool = True


class AWQ(Pass):
    """Activation-aware weight quantization for group-quantized formats."""

    name = "awq"
    scales_shared_input = True

    def __init__(self, options: AWQOptions | None = None) -> None:
        self.options = options or AWQOptions()
        self._explicit: dict[str, torch.Tensor] = {}  # layer -> unfolded input scale
        self._hessian: dict[str, torch.Tensor] = {}  # layer -> Hessian of its (scaled) inputs

    def check(self, layer: str, config: LayerConfig) -> None:
        if not is_quantized(config.format):
            raise self.refuse(layer, config, "AWQ scales weights before quantizing them; give an int, nf4 or fp8 format")
        if config.sparsity:
            raise self.refuse(layer, config, "unstructured sparsity needs a pruning method")

    def prepare_block(self, cal: BlockCalibration, layers: dict[str, LayerConfig]) -> None:
        self._explicit.clear()
        self._hessian.clear()
        for group in input_groups(cal, layers):
            rows = group.group.source.rows if group.foldable else None
            scale, _, _ = search_scale([w.numpy() for w in group.weights()], group.stats.hessian,
                                           group.stats.abs_mean, [layers[r.name].format for r in group.members],
                                           rows, self.options.grid)
            for ref in group.members:
                self._hessian[ref.name] = group.stats.hessian / torch.outer(scale, scale).double()
                if not group.foldable:
                    self._explicit[ref.name] = scale
            if group.foldable:
                group.fold(scale)

    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None, layer: str) -> Compressed:
        fmt = config.format
        scale = self._explicit.get(layer)
        w = weight * scale.numpy()[None, :] if scale is not None else weight
        if self.options.clip:
            params = clipped_params(w, self._hessian[layer].numpy(), fmt)
        else:
            params = fmt.fit(to_groups(w, fmt.group_size(w.shape[1])))
        encoded = fmt.encode_with(w, params)
        deq = fmt.decode(encoded, w.shape)
        if scale is None:
            return Compressed(deq, encoded)
        return Compressed(deq / scale.numpy()[None, :], encoded, scale.numpy())

