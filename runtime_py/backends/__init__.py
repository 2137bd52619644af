"""Runtime backends, by name; `auto` takes the fastest one present."""

from __future__ import annotations

from edgec.runtime.backends.base import Backend, Linear
from edgec.runtime.backends.reference import ReferenceBackend
from edgec.runtime.errors import EdgecError

_BACKENDS: dict[str, type[Backend]] = {"reference": ReferenceBackend}
_PREFERENCE = ("reference",)  # fastest first


def backend_names() -> list[str]:
    """Every backend's name, and 'auto'."""
    return ["auto", *_BACKENDS]


def make_backend(name: str = "auto") -> Backend:
    """The backend called `name`; 'auto' is the first available of the fastest-first preference."""
    if name == "auto":
        name = _PREFERENCE[0]
    if name not in _BACKENDS:
        raise EdgecError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
    return _BACKENDS[name]()


__all__ = ["Backend", "Linear", "backend_names", "make_backend"]
