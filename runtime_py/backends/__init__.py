"""Runtime backends, by name; `auto` takes the fastest one available here."""

from __future__ import annotations

from collections.abc import Callable

from edgec.runtime.backends.base import Backend, Linear
from edgec.runtime.backends.cpu import CpuBackend, cpu_kernels_reason
from edgec.runtime.backends.reference import ReferenceBackend
from edgec.runtime.errors import EdgecError

# fastest first: name -> (class, why it cannot run here or None)
_BACKENDS: dict[str, tuple[type[Backend], Callable[[], str | None]]] = {
    "cpu": (CpuBackend, cpu_kernels_reason),
    "reference": (ReferenceBackend, lambda: None),
}


def backend_names() -> list[str]:
    """Every backend's name, and 'auto'."""
    return ["auto", *_BACKENDS]


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if it runs here, else the reason it does not."""
    return {name: reason() for name, (_, reason) in _BACKENDS.items()}


def make_backend(name: str = "auto") -> Backend:
    """The backend called `name`; 'auto' is the fastest one available here."""
    if name == "auto":
        name = next(n for n, why in available_backends().items() if why is None)
    if name not in _BACKENDS:
        raise EdgecError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    return _BACKENDS[name][0]()


__all__ = ["Backend", "Linear", "available_backends", "backend_names", "make_backend"]
