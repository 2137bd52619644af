"""The backend interface: how a model's linear layers and embedding lookups are computed.

An executor asks its backend for one `Linear` per weight at load time (the backend may
convert the stored buffers for its kernels then, never to a float copy unless it is
the reference) and calls it per forward. Everything else an executor does (norms,
rotary embeddings, attention) is plain numpy, shared by every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from edgec.core.formats import Format
from edgec.core.layer_input import layer_input

Kernel = Callable[[np.ndarray], np.ndarray]  # (T, K) float32 -> (T, N) float32


class Linear:
    """y = layer_input(x) @ W^T (+ bias) for one stored weight (`edgec.core.layer_input`: divide by an input
    scale, then quantize to 8 bits, each where the layer has it)."""

    def __init__(self, kernel: Kernel, nbytes: int, input_scale: np.ndarray | None = None,
                 act_scale: float | None = None, act_format: Format | None = None, bias: np.ndarray | None = None) -> None:
        self.kernel, self.nbytes = kernel, nbytes
        self.input_scale, self.act_scale, self.act_format, self.bias = input_scale, act_scale, act_format, bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = layer_input(x, self.input_scale, self.act_scale, self.act_format)
        y = self.kernel(np.ascontiguousarray(x, dtype=np.float32))
        return y + self.bias if self.bias is not None else y


def format_buffers(fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Only the buffers the format itself stores (without the input_scale/act_scale extras)."""
    return {b.name: buffers[b.name] for b in fmt.buffers(shape)}


def embedding_rows(fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int], ids: np.ndarray) -> np.ndarray:
    """Rows `ids` of a stored (vocab, dim) matrix as float32, dequantizing those rows only.

    Exact for every format, because every stored buffer of a weight is laid out row by row.
    """
    rows = {name: array[ids] for name, array in format_buffers(fmt, buffers, shape).items()}
    return fmt.dequantize(rows, (len(ids), shape[1]))


class Backend(ABC):
    """Computes linear layers; `name` is what `load(..., backend=)` and `edgec bench` call it."""

    name: str

    @abstractmethod
    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        """A kernel for y = x @ W^T with W the weight stored in `buffers`, and the bytes it keeps in memory
        beyond those buffers (which are views of the mapped file)."""

    # The architecture families (edgec.core.architectures) this backend runs as one fused pass; every
    # other family runs per linear, each `Linear` on this backend, with the executor's own numpy steps.
    fused_families: ClassVar[tuple[str, ...]] = ()

    def fused_pass(self, family: str, config, blocks, norm: np.ndarray, head: Linear, rotary):
        """A callable running a whole pass of `family` `(x, cache, start, all_logits) -> logits`, or None when
        the backend has none for that family or for these layers (the executor then runs its own steps)."""
        return self._fused_pass(config, blocks, norm, head, rotary) if family in self.fused_families else None

    def _fused_pass(self, config, blocks, norm: np.ndarray, head: Linear, rotary):
        """The fused pass of a family in `fused_families` over these layers, or None if it cannot run them."""
        return None

    def linear(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int],
               bias: np.ndarray | None = None) -> Linear:
        """A `Linear` for a stored weight, honouring its extra buffers (input_scale, act_scale)."""
        kernel, nbytes = self.kernel(fmt, format_buffers(fmt, buffers, shape), shape)
        act = buffers.get("act_scale")
        return Linear(kernel, nbytes, buffers.get("input_scale"), None if act is None else float(act[0]), fmt, bias)
