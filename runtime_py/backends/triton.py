"""The `triton` backend: every linear layer by the Triton kernels of `edgec.kernels.triton`, on the GPU.

Each weight's stored buffers are copied to the device once (codes as stored, or dense codes repacked
into the word layout both matmul kernels read, `edgec.kernels.triton.word_layout`; scales widened to
float32; no float copy of the weight). LLaMA-family models run their whole pass on the device
(runtime_py/backends/triton_decoder.py); other executors call each linear layer with host
activations, which cross to the device and back per call. Without a GPU it runs in Triton's
interpreter when TRITON_INTERPRET=1 is set (for tests: slow, and never picked by `auto`).
"""

from __future__ import annotations

import numpy as np

from edgec.core.errors import EdgecError
from edgec.core.formats import Format
from edgec.runtime.backends.base import Backend, Kernel


def triton_reason() -> str | None:
    """None if the Triton kernels can run here (GPU or interpreter), else why not."""
    from edgec.kernels import triton as tk

    return tk.unavailable_reason()


def triton_gpu_reason() -> str | None:
    """None if the Triton kernels run on a GPU here (what `auto` asks), else why not."""
    import os

    reason = triton_reason()
    if reason is None and os.environ.get("TRITON_INTERPRET") == "1":
        return "Triton runs in its interpreter here (TRITON_INTERPRET=1): for tests, not speed"
    return reason


class TritonBackend(Backend):
    """Fused dequantize-and-multiply Triton kernels (see docs/triton.md)."""

    name = "triton"
    fused_families = ("llama",)  # the LLaMA-family pass on the device (triton_decoder)

    def __init__(self) -> None:
        reason = triton_reason()
        if reason is not None:
            raise EdgecError(f"the triton backend is not available: {reason}")
        from edgec.kernels import triton as tk

        self._tk = tk

    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        kernel = TritonKernel(self._tk.prepare(fmt, buffers, shape))
        on_host = kernel.weight.device.type == "cpu"
        return kernel, kernel.weight.prepared_bytes if on_host else 0

    def _fused_pass(self, config, blocks, norm, head, rotary):
        from edgec.runtime.backends.triton_decoder import DeviceLlama

        return DeviceLlama.build(config, blocks, norm, head, rotary)


class TritonKernel:
    """y = x @ W^T for numpy x through the Triton kernels (the weight on its device)."""

    def __init__(self, weight) -> None:
        from edgec.kernels import triton as tk

        self.weight, self._linear = weight, tk.linear

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        return self._linear(self.weight, torch.from_numpy(x).to(self.weight.device)).cpu().numpy()
