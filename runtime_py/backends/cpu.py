"""The `cpu` backend: weights stay packed; the compiled kernels of `edgec.kernels.cpu` compute from them.

Each weight is prepared once (a kernel-friendly view or repack of its stored buffers,
never a float copy) and every call writes into a buffer the backend reuses, so a decode
step allocates nothing per layer. `accuracy="int8"` lets int4 and int8 layers quantize
the activations to int8 for integer dot products, in decode and prefill (faster, not exact);
the default is exact: the format's dequantized weight with float32 accumulation.
"""

from __future__ import annotations

import numpy as np

from edgec.core.errors import EdgecError
from edgec.core.formats import Format
from edgec.runtime.backends.base import Backend, Kernel

ACCURACIES = ("exact", "int8")


def cpu_kernels_reason() -> str | None:
    """None if the compiled CPU kernels can run here, else why not."""
    from edgec.kernels import cpu

    return None if cpu.available() else cpu.unavailable_reason()


class CpuBackend(Backend):
    """Per-format SIMD kernels over the packed weights (see docs/kernels.md)."""

    name = "cpu"
    fused_families = ("llama",)  # the compiled LLaMA-family decoder (cpu_decoder)

    def __init__(self, threads: int | None = None, accuracy: str = "exact") -> None:
        if accuracy not in ACCURACIES:
            raise EdgecError(f"unknown accuracy {accuracy!r}; choose one of {', '.join(ACCURACIES)}")
        reason = cpu_kernels_reason()
        if reason is not None:
            raise EdgecError(f"the cpu backend is not available: {reason}")
        from edgec.kernels import cpu

        self._cpu = cpu
        self.accuracy = accuracy
        if threads is not None:
            cpu.set_threads(threads)

    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        kernel = CpuKernel(self._cpu.prepare(fmt, buffers, shape), self.accuracy)
        views = list(buffers.values())
        owned = sum(a.nbytes for a in kernel.prepared.arrays.values() if not any(np.shares_memory(a, v) for v in views))
        return kernel, owned

    def _fused_pass(self, config, blocks, norm, head, rotary):
        from edgec.runtime.backends.cpu_decoder import FusedLlama

        return FusedLlama.build(config, blocks, norm, head, rotary, self.accuracy)


class CpuKernel:
    """y = x @ W^T for one prepared weight, written into an output buffer reused call after call."""

    def __init__(self, prepared, accuracy: str) -> None:
        from edgec.kernels import cpu

        self.prepared, self._accuracy, self._linear = prepared, accuracy, cpu.linear
        self._out: dict[int, np.ndarray] = {}  # rows -> output buffer

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._out.get(len(x))
        if out is None:
            out = self._out[len(x)] = np.empty((len(x), self.prepared.shape[0]), np.float32)
        return self._linear(self.prepared, x, out, self._accuracy)
