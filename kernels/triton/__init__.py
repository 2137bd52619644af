"""Triton GPU kernels: y = x @ W^T computed from a weight's stored buffers, for every format.

    from edgec.kernels import triton as tk
    tk.available(), tk.unavailable_reason()
    w = tk.prepare(fmt, packed, (n, k), device="cuda")   # the stored buffers, on the device
    y = tk.linear(w, x)                                  # x torch float (M, K) -> y float32 (M, N)

Triton (and torch) are imported only when a kernel is used, so `edgec.kernels` imports on
machines without them. Without a GPU the kernels run in Triton's interpreter when the
environment variable TRITON_INTERPRET=1 is set before Triton is first imported: that is how
they are tested on CPU tensors (slowly; it is for correctness, not speed). See docs/triton.md.
"""

from __future__ import annotations

import importlib.util
import os

_GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # NVIDIA, AMD ROCm, WSL


def gpu_present() -> bool:
    """Whether the OS shows a GPU, checked before importing torch: the runtime asks on every `load`,
    and importing torch costs seconds and hundreds of MB that an app running on the CPU must not pay."""
    return any(os.path.exists(p) for p in _GPU_DEVICE_NODES)


def unavailable_reason() -> str | None:
    """None if the Triton kernels can run in this process, else why not."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("torch") is None:
        return "the Triton kernels need the `triton` and `torch` packages (pip install triton)"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    if not gpu_present():
        return "no GPU here (set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter on CPU tensors)"
    import torch

    if not torch.cuda.is_available():
        return "no GPU here (set TRITON_INTERPRET=1 to run the kernels in Triton's interpreter on CPU tensors)"
    return None


def available() -> bool:
    """Whether the Triton kernels can run here (on a GPU, or in the interpreter)."""
    return unavailable_reason() is None


def prepare(fmt, packed, shape, device=None):
    """A weight's stored buffers moved to `device` (default: cuda, or cpu in the interpreter) for `linear`."""
    from edgec.kernels.triton.weights import prepare as _prepare

    return _prepare(fmt, packed, shape, device)


def linear(weight, x, out=None):
    """y = x @ W^T for a prepared weight; x a float tensor (M, K) on the weight's device."""
    from edgec.kernels.triton.matmul import linear as _linear

    return _linear(weight, x, out)


__all__ = ["available", "gpu_present", "linear", "prepare", "unavailable_reason"]
