"""What every compression pass shares: per-layer configs, the pass interface, and encoding results.

A compression request is a mapping from linear name to `LayerConfig` (format,
method, options); a uniform `--format` is the mapping giving every linear the same
config, and a plan file is any other mapping. Passes never see the CLI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from edgec.calibration.sequential import BlockCalibration
from edgec.core.errors import EdgecError
from edgec.core.formats import Format
from edgec.core.formats.base import Encoded, GroupQuantizedFormat, Packed
from edgec.core.formats.dense import DenseFloat
from edgec.core.formats.sparse24 import Sparse24


@dataclass(frozen=True)
class LayerConfig:
    """How one linear is compressed: storage format, method, and unstructured sparsity for pruning methods."""

    format: Format
    method: str
    sparsity: float = 0.0


@dataclass
class Compressed:
    """One compressed weight: the float weights the model computes with, and their encoding.

    `input_scale` (K,), when set, is an input scale s that could not be folded into the
    previous op: the encoding stores Q(W·diag(s)) and a runtime must divide its inputs by s;
    `weight` is then Q(W·diag(s))·diag(s)⁻¹, what the layer computes. `act_scale`, when set,
    is the static per-tensor scale the layer's input is quantized with (W8A8 methods).
    """

    weight: np.ndarray
    encoded: Encoded
    input_scale: np.ndarray | None = None
    act_scale: np.float32 | None = None  # static per-tensor activation scale (W8A8)


@dataclass
class LayerResult:
    """A compressed linear: its config, its stored buffers (`Format.pack`), any unfolded input scale and
    activation scale. Kept packed, not as logical arrays: a 4-bit model's codes then take half a byte a weight."""

    config: LayerConfig
    packed: Packed
    input_scale: np.ndarray | None = None
    act_scale: np.float32 | None = None


class Pass(ABC):
    """One compression method. `calibrated` passes run inside the sequential pipeline."""

    name: ClassVar[str]
    calibrated: ClassVar[bool] = True
    # True when the pass scales a shared input (AWQ): every linear of a fused group, which reads
    # that input, must then use this pass
    scales_shared_input: ClassVar[bool] = False

    @abstractmethod
    def check(self, layer: str, config: LayerConfig) -> None:
        """Refuse a config this method cannot produce, naming the layer and the format."""

    def prepare_block(self, cal: BlockCalibration, layers: dict[str, LayerConfig]) -> None:  # noqa: B027
        """Block-level work before this block's layers are compressed (AWQ's scale search); none by default."""

    @abstractmethod
    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None, layer: str) -> Compressed:
        """Compress one weight (N, K)."""

    def compress_shared(self, weights: list[np.ndarray], config: LayerConfig, cal: BlockCalibration,
                        layers: list[str]) -> list[Compressed]:
        """Compress linears that read one input (and so share its statistics) under one config.

        One by one unless a method can do better with them together (GPTQ sweeps them as one
        matrix: its rows are independent given the shared Hessian).
        """
        return [self.compress(w, config, cal, layer) for w, layer in zip(weights, layers)]

    def refuse(self, layer: str, config: LayerConfig, why: str) -> EdgecError:
        return EdgecError(f"layer {layer!r}: method {self.name} cannot produce {config.format} ({why})")


def is_quantized(fmt: Format) -> bool:
    """Formats with codes and group parameters (int*, nf4, fp8)."""
    return isinstance(fmt, GroupQuantizedFormat)


def is_dense_float(fmt: Format) -> bool:
    return isinstance(fmt, DenseFloat)


def sparse_inner(fmt: Format) -> Format | None:
    """The inner format of a 2:4 format, or None for a dense one."""
    return fmt.inner if isinstance(fmt, Sparse24) else None


def encode_with_keep(fmt: Format, weight: np.ndarray, keep: np.ndarray) -> Encoded:
    """Encode `weight` by RTN (survivors only, for 2:4 formats) under a kept mask chosen by a pass."""
    if isinstance(fmt, Sparse24):
        n, k = weight.shape
        idx = np.nonzero(keep.reshape(n, k // 4, 4))[2].reshape(n, k // 4, 2).astype(np.uint8)
        return fmt.encode_kept(weight, idx)
    return fmt.encode(weight * keep)
