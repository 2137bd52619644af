"""Round-to-nearest: every format of the registry, no calibration."""

from __future__ import annotations

import numpy as np

from edgec.calibration.sequential import BlockCalibration
from edgec.passes.base import Compressed, LayerConfig, Pass


class RTN(Pass):
    """Round each weight to the nearest value of its format (2:4 keeps the two largest of four)."""

    name = "rtn"
    calibrated = False

    def check(self, layer: str, config: LayerConfig) -> None:
        if config.sparsity:
            raise self.refuse(layer, config, "unstructured sparsity needs a pruning method")

    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None,
                 layer: str) -> Compressed:
        enc, decoded = config.format.encode_decode(weight)
        return Compressed(decoded, enc)
