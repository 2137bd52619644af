"""Micro-benchmarks behind `edgec profile`: a backend's linear kernels, and its device, measured.

What is timed is one linear y (T, N) = x (T, K) @ W^T with W stored in a format, run
the way a runtime backend runs it (`edgec.planner.profile_targets`: the numpy
reference, the cpu backend's SIMD kernels, or the Triton kernels on the GPU).
`linear_kernel` is the reference's: dequantize the stored buffers to float32 (for fp16
and bf16 that is just the cast), then multiply in numpy float32.

Each (format, shape, tokens) point is the median of a few samples after two warm-up
calls (the first may compile or autotune a kernel); a sample repeats the call back to
back for at least the target's `min_sample_s` and divides, so that microsecond kernels
are not timed by the timer's own cost. The number of samples adapts to a time budget so
that the default profile stays within a couple of minutes on a laptop-class CPU.

Host figures (memory capacity, copy bandwidth, peak fp32 matmul) are measured with plain
numpy; the dispatch overhead with the profiled backend's own smallest call;
`HostFigures.sources` says how each was found.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgec.core.formats import Format, parse_format
from edgec.core.formats.dense import DenseFloat
from edgec.planner.profiles import KernelTiming

if TYPE_CHECKING:
    from edgec.planner.profile_targets import ProfileTarget

HOST_FORMATS = ("fp16", "bf16", "int8", "fp8", "int4:g128", "int4:g64", "int3:g128", "nf4:g64", "2:4", "2:4+int4:g128")
"""The formats the host's reference kernels run and the planner may choose.

Group size 32 is left out: the default model's weights already sit on an int4 group-32
grid, which would flatter any plan that picks it (int4:g32:asym reproduces it exactly);
a user wanting it adds it to the profile.
"""

DEFAULT_SHAPES = (
    (256, 256), (192, 576), (576, 576), (256, 1024), (1024, 256), (1536, 576), (576, 1536), (1024, 1024),
    (2048, 576), (1536, 1536), (1024, 3072), (3072, 1024), (2048, 2048), (2048, 3072), (3072, 3072),
    (5632, 2048), (2048, 5632),
)
"""(N, K) of real transformer linears: SmolLM2-135M's four ((576, 576), (192, 576), (1536, 576),
(576, 1536)), 1-3B models' attention and MLP projections, TinyLlama's MLP (5632 x 2048)."""

QUICK_SHAPES = ((128, 128), (64, 256), (256, 128), (192, 192), (128, 384))
"""Small shapes for `edgec profile --quick` (tests): seconds, not minutes."""

QUICK_TOKENS = (1, 4, 16)
"""Token counts for `edgec profile --quick`."""

DEFAULT_TOKENS = (1, 16, 128)
"""Decode (one token), a short prompt, and prefill."""

DEFAULT_BUDGET_S = 60.0
"""Seconds of timed kernel calls (warm-ups and quantization come on top) in a default profile."""


def linear_kernel(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """y = x @ W.T with W dequantized from its stored buffers: the runtime's reference linear.

    `x` is float32 (T, K); the result is float32 (T, N). For fp16/bf16 the dequantization
    is the cast of the stored values to float32.
    """
    w = fmt.decode(packed, shape) if isinstance(fmt, DenseFloat) else fmt.dequantize(packed, shape)
    return x @ w.T


def kernel_threads() -> int:
    """Threads numpy's BLAS may use here: its environment variable, else the CPUs this process may run on."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def seconds_per_call(call: Callable[[], object], inner: int = 1,
                     synchronize: Callable[[], None] = lambda: None) -> float:
    """Seconds per call of `inner` back-to-back calls, waited for with `synchronize`."""
    synchronize()
    start = time.perf_counter()
    for _ in range(inner):
        call()
    synchronize()
    return (time.perf_counter() - start) / inner


def measure_kernels(formats: Sequence[str | Format], shapes: Sequence[tuple[int, int]], token_counts: Sequence[int],
                    *, target: ProfileTarget | None = None, repeats: int = 7, min_repeats: int = 3,
                    budget_s: float = DEFAULT_BUDGET_S, progress: bool = True, seed: int = 0) -> list[KernelTiming]:
    """Time `target`'s linear (default: the numpy reference) for every format x shape x token count.

    Weights are Gaussian, quantized once per format and shape (not timed). Each point is
    the median of between `min_repeats` and `repeats` samples after two warm-up calls,
    the count chosen so that the samples together take about `budget_s` seconds. The
    samples of one shape are interleaved (round after round over its formats and token
    counts), so a burst of other work on the machine slows one sample of many points
    rather than every sample of one point, and the median discards it. Progress goes to
    stderr when `progress`, counting each point twice: once when its warm-up is done (on a
    GPU that compiles and autotunes it, the longer part) and once when it is timed.
    """
    from edgec.core.progress import progress_counter

    if target is None:
        from edgec.planner.profile_targets import ReferenceTarget

        target = ReferenceTarget()
    fmts = [parse_format(f) for f in formats]
    shapes = [(int(n), int(k)) for n, k in shapes]
    token_counts = [int(t) for t in token_counts]
    for fmt in fmts:
        for shape in shapes:
            fmt.check_shape(shape)
    points = len(fmts) * len(shapes) * len(token_counts)
    per_point = budget_s / max(points, 1)
    rng = np.random.default_rng(seed)
    timings: list[KernelTiming] = []
    with progress_counter(total=2 * points, desc="timing kernels", unit="step",
                          enabled=progress) as bar:
        for n, k in shapes:
            bar.set_postfix_str(f"{n}x{k}", refresh=False)
            w = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.02)
            xs = {t: rng.standard_normal((t, k), dtype=np.float32) for t in token_counts}
            calls: list[tuple[Format, int, Callable[[], object]]] = []
            for fmt in fmts:
                packed = fmt.quantize(w)
                for t in token_counts:
                    calls.append((fmt, t, target.call(fmt, packed, (n, k), xs[t])))
            inners, counts = [], []
            for _, _, call in calls:
                seconds_per_call(call, 1, target.synchronize)  # compiles, autotunes, allocates
                once = max(seconds_per_call(call, 1, target.synchronize), 1e-9)
                inners.append(max(1, min(1000, int(target.min_sample_s / once))))
                counts.append(max(min_repeats, min(repeats, int(per_point / (once * inners[-1])))))
                bar.update()
            times: list[list[float]] = [[] for _ in calls]
            for round_ in range(max(counts)):
                for i, (_, _, call) in enumerate(calls):
                    if round_ < counts[i]:
                        times[i].append(seconds_per_call(call, inners[i], target.synchronize))
            for (fmt, t, _), samples in zip(calls, times):
                timings.append(KernelTiming(format=str(fmt), n=n, k=k, tokens=t,
                                            seconds=max(statistics.median(samples), 1e-9)))
            bar.update(len(calls))
    return timings


@dataclass(frozen=True)
class HostFigures:
    """A device's capacity, bandwidth, peak arithmetic and dispatch overhead, with how each was measured."""

    memory_bytes: int
    usable_memory_fraction: float
    bandwidth_gbs: float
    peak_tops: dict[str, float]  # compute type -> dense TFLOPS
    dispatch_us: float
    sources: dict[str, str] = field(default_factory=dict)


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes ({} where there is none)."""
    try:
        lines = open("/proc/meminfo").read().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def _cgroup_limit() -> int | None:
    """The cgroup v2 (or v1) memory limit of this process, if one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            return int(text)
    return None


def measure_memory() -> tuple[int, float, str]:
    """(capacity bytes, usable fraction, how): MemTotal (or a lower cgroup limit), MemAvailable share."""
    info = _meminfo()
    if "MemTotal" in info:
        total, how = info["MemTotal"], "/proc/meminfo MemTotal"
    else:
        total, how = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "sysconf pages x page size"
    limit = _cgroup_limit()
    if limit is not None and limit < total:
        total, how = limit, "cgroup memory limit (below MemTotal)"
    available = min(info.get("MemAvailable", total // 2), total)
    return total, usable_fraction(available, total), how


def usable_fraction(available: int, total: int) -> float:
    """available / total rounded down to 5 %, between 0.1 and 0.9: a profile's `usable_memory_fraction`."""
    return min(0.9, max(0.1, int(20 * available / total) / 20))


def measure_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """GB/s of a large float32 numpy copy (bytes read + bytes written over the best time)."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(seconds_per_call(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9


def measure_peak_fp32(size: int = 2048, repeats: int = 4) -> float:
    """TFLOPS of a (size x size) @ (size x size) float32 numpy matmul, best of `repeats`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    best = min(seconds_per_call(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e12


def measure_host(quick: bool, dispatch: ProfileTarget) -> HostFigures:
    """Measure memory, copy bandwidth and peak fp32 matmul with numpy, and `dispatch`'s per-call overhead
    (`quick`: smaller arrays, fewer calls)."""
    memory, fraction, how = measure_memory()
    mb = 32 if quick else 256
    size = 512 if quick else 2048
    bandwidth = measure_bandwidth(mb, repeats=3 if quick else 5)
    peak = measure_peak_fp32(size, repeats=2 if quick else 4)
    return HostFigures(
        memory_bytes=memory, usable_memory_fraction=fraction, bandwidth_gbs=bandwidth,
        peak_tops={"fp32": peak}, dispatch_us=dispatch.dispatch_us(200 if quick else 2000),
        sources={
            "memory_bytes": how,
            "usable_memory_fraction": "MemAvailable / MemTotal when profiled, rounded down to 5 % (0.1 to 0.9)",
            "bandwidth_gbs": f"numpy copy of {mb} MiB float32, (read + written bytes) / best of runs",
            "peak_tops": f"numpy float32 matmul {size}x{size}x{size}, 2 N^3 / best of runs",
            "dispatch_us": f"median time of one call of the {dispatch.backend} backend's fp16 linear on a 16x64 "
                           f"weight and one token",
        },
    )
