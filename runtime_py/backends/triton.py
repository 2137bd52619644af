"""The `triton` backend: every linear layer by the Triton kernels of `edgec.kernels.triton`, on the GPU.

Each weight's stored buffers are copied to the device once (codes as stored, scales widened to
float32; no float copy of the weight); activations cross to the device and back per call. The
executors' norms, rotary embeddings and attention stay in numpy on the host. Without a GPU it
runs in Triton's interpreter when TRITON_INTERPRET=1 is set (for tests: slow, and never picked
by `auto`).
"""

from __future__ import annotations

import numpy as np

from edgec.runtime.backends.base import Backend, Kernel
from edgec.runtime.errors import EdgecError
from edgec.runtime.formats import Format


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

    def __init__(self) -> None:
        reason = triton_reason()
        if reason is not None:
            raise EdgecError(f"the triton backend is not available: {reason}")
        from edgec.kernels import triton as tk

        self._tk = tk

    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        import torch

        weight = self._tk.prepare(fmt, buffers, shape)
        linear = self._tk.linear

        def run(x: np.ndarray) -> np.ndarray:
            return linear(weight, torch.from_numpy(x).to(weight.device)).cpu().numpy()

        held = [weight.q, weight.scale, weight.minv, weight.lut] + ([weight.meta] if weight.meta is not None else [])
        on_host = weight.device.type == "cpu"
        return run, sum(t.numel() * t.element_size() for t in held) if on_host else 0
