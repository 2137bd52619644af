"""Runtime backends, by name; `auto` takes the fastest one available here."""

from __future__ import annotations

from collections.abc import Callable

from edgec.core.errors import EdgecError
from edgec.runtime.backends.base import Backend, Linear
from edgec.runtime.backends.cpu import ACCURACIES, CpuBackend, cpu_kernels_reason
from edgec.runtime.backends.reference import ReferenceBackend
from edgec.runtime.backends.triton import TritonBackend, triton_gpu_reason, triton_reason

# fastest first: name -> (class, why it cannot run here or None, why `auto` should not pick it or None)
_BACKENDS: dict[str, tuple[type[Backend], Callable[[], str | None], Callable[[], str | None]]] = {
    "triton": (TritonBackend, triton_reason, triton_gpu_reason),
    "cpu": (CpuBackend, cpu_kernels_reason, cpu_kernels_reason),
    "reference": (ReferenceBackend, lambda: None, lambda: None),
}


def backend_names() -> list[str]:
    """Every backend's name, and 'auto'."""
    return ["auto", *_BACKENDS]


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if it runs here, else the reason it does not."""
    return {name: reason() for name, (_, reason, _) in _BACKENDS.items()}


def make_backend(name: str = "auto", accuracy: str = "exact", threads: int | None = None) -> Backend:
    """The backend called `name`; 'auto' is the fastest one available here.

    threads: the cpu kernels' threads (a process-wide setting; default every CPU this
    process may run on); the reference backend leaves threading to numpy's BLAS.

    accuracy="exact" computes every layer from its format's exact dequantized weights;
    "int8" lets the cpu backend quantize activations to int8 for int4/int8 layers during
    decode, as llama.cpp does (only the cpu backend has it).
    """
    if accuracy not in ACCURACIES:
        raise EdgecError(f"unknown accuracy {accuracy!r}; choose one of {', '.join(ACCURACIES)}")
    if name == "auto":
        name = next(n for n, (_, _, why) in _BACKENDS.items() if why() is None)
    if name not in _BACKENDS:
        raise EdgecError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    if threads is not None and not 1 <= threads <= 256:
        raise EdgecError(f"threads must be between 1 and 256, got {threads}")
    if name == "cpu":
        return CpuBackend(threads=threads, accuracy=accuracy)
    if accuracy != "exact":
        raise EdgecError(f"accuracy {accuracy!r} needs the cpu backend; the {name} backend computes exactly")
    return _BACKENDS[name][0]()


__all__ = ["ACCURACIES", "Backend", "Linear", "available_backends", "backend_names", "make_backend"]
