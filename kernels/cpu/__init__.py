"""CPU kernels: y = x @ W^T computed straight from a format's stored buffers.

    from edgec.kernels import cpu
    p = cpu.prepare(fmt, packed, (n, k))   # once per weight: no float copy
    y = cpu.linear(p, x)                   # x float32 (M, K) -> y (M, N)

The work is done by a C extension (edgec.kernels._cpu, sources beside this file) with
AVX2+FMA (and AVX-VNNI) kernels chosen at run time and portable C for other CPUs; output rows are
split across `threads()` threads. If the extension was not built, `available()` is
False and `unavailable_reason()` says why. docs/kernels.md describes the kernels.
"""

from edgec.kernels.cpu.conversion import CONVERTERS, PreparedWeight, prepare
from edgec.kernels.cpu.extension import (
    available,
    set_simd,
    set_threads,
    simd,
    simd_levels,
    threads,
    unavailable_reason,
)
from edgec.kernels.cpu.matmul import linear

__all__ = [
    "CONVERTERS", "PreparedWeight", "available", "linear", "prepare", "set_simd", "set_threads",
    "simd", "simd_levels", "threads", "unavailable_reason",
]
