"""SmoothQuant: W8A8 (int8 or fp8 weights and activations) with outliers migrated into weights.

Per block, every group of linears whose input comes from a foldable op (a norm, or the
previous linear's rows; see `Adapter.scale_groups`) is smoothed with `smoothing_scale`
and the scale folded exactly, as AWQ's scales are. Every linear's weights are then
quantized by RTN to int8 or fp8 (per output channel), and its static per-tensor
activation scale — the largest smoothed calibration |x| over 127 (int8) or 448 (fp8) —
is recorded for export and applied when the compressed model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.calibration.sequential import BlockCalibration
from edgec.core.formats.fp8 import E4M3_MAX, FP8
from edgec.core.formats.int8 import Int8
from edgec.passes.base import Compressed, LayerConfig, Pass
from edgec.passes.input_scaling import input_groups
from edgec.passes.smoothquant_math import activation_scale, smoothing_scale


@dataclass(frozen=True)
class SmoothQuantOptions:
    """alpha: migration strength, 0 (all difficulty on activations) to 1 (all on weights);
    smooth=False quantizes weights and activations without migrating anything (the ablation)."""

    alpha: float = 0.5
    smooth: bool = True


class SmoothQuant(Pass):
    """Weight-and-activation 8-bit quantization with SmoothQuant's smoothing."""

    name = "smoothquant"

    def __init__(self, options: SmoothQuantOptions | None = None) -> None:
        self.options = options or SmoothQuantOptions()
        self._act_scale: dict[str, float] = {}

    def check(self, layer: str, config: LayerConfig) -> None:
        if not isinstance(config.format, (Int8, FP8)):
            raise self.refuse(layer, config, "SmoothQuant is weight-and-activation 8-bit; give int8 or fp8")
        if config.sparsity:
            raise self.refuse(layer, config, "unstructured sparsity needs a pruning method")

    def prepare_block(self, cal: BlockCalibration, layers: dict[str, LayerConfig]) -> None:
        self._act_scale.clear()
        for group in input_groups(cal, layers):
            scale = None
            if group.foldable and self.options.smooth:
                scale = smoothing_scale(group.stats.abs_max, group.weights(), self.options.alpha, group.group.source.rows)
                group.fold(scale)
            for ref in group.members:
                qmax = 127.0 if isinstance(layers[ref.name].format, Int8) else E4M3_MAX
                self._act_scale[ref.name] = activation_scale(group.stats.abs_max, scale, qmax)

    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None, layer: str) -> Compressed:
        encoded = config.format.encode(weight)
        return Compressed(config.format.decode(encoded, weight.shape), encoded,
                          act_scale=np.float32(self._act_scale[layer]))
