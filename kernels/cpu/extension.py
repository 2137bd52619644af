"""Loading the compiled kernels (edgec.kernels._cpu) and their process-wide settings.

The extension is optional: it is compiled when edgec is installed with a C compiler
present. Without it `available()` is False and `unavailable_reason()` says why.
"""

from __future__ import annotations

import os
from types import ModuleType

_cpu: ModuleType | None
try:
    from edgec.kernels import _cpu
except ImportError as exc:
    _cpu = None
    _REASON: str | None = (
        f"the C extension edgec.kernels._cpu is not built ({exc}); it compiles when edgec is "
        "installed with a C compiler present (`pip install -v` shows the compiler's error)"
    )
else:
    _REASON = None


def _default_threads() -> int:
    """CPUs this process may run on (os.cpu_count(), less any affinity restriction)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available() -> bool:
    """Whether the compiled kernels can run here."""
    return _cpu is not None


def unavailable_reason() -> str | None:
    """Why the kernels are not available, or None when they are."""
    return _REASON


def extension() -> ModuleType:
    """The compiled module; RuntimeError with the reason if it is missing."""
    if _cpu is None:
        raise RuntimeError(f"CPU kernels unavailable: {_REASON}")
    return _cpu


def simd() -> str:
    """The kernel family in use: 'avx2+fma' on x86-64 CPUs that have it, else 'generic'."""
    return extension().simd()


def simd_levels() -> list[str]:
    """Kernel families this CPU can run, fastest first."""
    return extension().simd_levels()


def set_simd(name: str) -> None:
    """Use one kernel family, e.g. 'generic' to compare with the portable C; ValueError if unsupported."""
    extension().set_simd(name)


def set_threads(n: int) -> None:
    """Threads that split the output rows of every call (1 .. 256)."""
    extension().set_threads(int(n))


def threads() -> int:
    """Threads that split the output rows of every call."""
    return extension().get_threads()


if _cpu is not None:
    _cpu.set_threads(min(_default_threads(), 256))
