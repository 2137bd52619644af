"""What the exporters read: a model with, per compressed linear, its format and stored buffers.

Both exporters take an `ExportSource`. The toolchain builds it (`edgec.export_sources`:
from a folder `edgec compress` wrote, or from a compression done in this process); the
exporters never import the toolchain, so they see the loaded model only through the
attributes `SourceModel` lists. Its torch model holds the dequantized weights and
quantizes the activations of W8A8 layers: it computes what the compressed model
computes. Each `ExportLayer` yields its packed buffers on demand, so an exporter can
stream layer by layer without a second copy of the model in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgec.core.formats import Format


class SourceModel(Protocol):
    """What the exporters use of a loaded model (the toolchain's `LoadedModel` is one)."""

    model: Any  # a transformers model (torch.nn.Module)
    tokenizer: Any  # a transformers fast tokenizer
    name: str
    adapter: Any  # names the model's linears and head: `linears(model)`, `head(model)`

    @property
    def task(self) -> str: ...  # "causal-lm" or "encoder"


@dataclass
class ExportLayer:
    """One compressed linear.

    `packed()` returns the buffers `format.buffers(shape)` lists, plus `input_scale`
    float32 (K,) when the layer's input is divided by it (SmoothQuant not folded) and
    `act_scale` float32 (1,) when its input is quantized with a static scale (W8A8).
    """

    name: str  # module name, e.g. "model.layers.0.mlp.down_proj"; its weight tensor is name + ".weight"
    format: Format
    method: str
    sparsity: float
    shape: tuple[int, int]  # (N, K): output features, input features
    packed: Callable[[], dict[str, np.ndarray]]
    extras: tuple[str, ...] = ()  # which of EXTRA_BUFFERS packed() also returns, in that order


@dataclass
class ExportSource:
    """A model to export: the torch model, its compressed layers, and where it came from."""

    loaded: SourceModel
    layers: dict[str, ExportLayer]
    plan: dict | None = None  # the plan file the compression followed, if any
    calibration: dict | None = None  # the manifest's calibration record, if any
    source_name: str = ""  # the original (uncompressed) model's name and weights hash
    source_hash: str = ""
