"""What `edgec profile` times: one runtime backend's linear kernel on its own device.

A `ProfileTarget` turns a format's stored buffers into a call y = x @ W^T that runs the
way the runtime runs it (the numpy reference, the cpu backend's SIMD kernels, or the
Triton kernels with the weight and activations resident on the GPU), says how to wait
for it to finish (a GPU runs asynchronously), and measures the device's own capacity,
bandwidth, peak arithmetic and per-call overhead. `profile_target(name)` picks one;
"auto" is the backend the runtime itself would pick here.
"""

from __future__ import annotations

import os
import statistics
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from edgec.core.errors import EdgecError
from edgec.core.formats import Format, parse_format
from edgec.planner.profiling import (
    DEFAULT_SHAPES,
    DEFAULT_TOKENS,
    HostFigures,
    kernel_threads,
    linear_kernel,
    measure_host,
    measure_memory,
    seconds_per_call,
    usable_fraction,
)

Call = Callable[[], object]

TARGETS = ("auto", "reference", "cpu", "triton")
"""Backends `edgec profile --backend` accepts."""

LLAMA_7B_SHAPES = ((4096, 4096), (11008, 4096), (4096, 11008))
"""(N, K) of a 7B LLaMA's attention and MLP projections: a GPU profile times them too."""

_DISPATCH_SHAPE = (16, 64)  # a weight small enough that one call of it is all fixed cost


class ProfileTarget(ABC):
    """One backend's linear kernel as `edgec profile` times it, and the device it runs on."""

    backend: str
    kind: str  # the profile's kind: "cpu" or "gpu"
    min_sample_s = 2e-4  # one timed sample lasts at least this long (calls are repeated within it)
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES  # (N, K) timed by a full profile
    tokens: tuple[int, ...] = DEFAULT_TOKENS

    @abstractmethod
    def call(self, fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], x: np.ndarray) -> Call:
        """A call computing x @ W^T with W stored in `packed`, everything prepared beforehand."""

    def synchronize(self) -> None:  # noqa: B027
        """Wait until every call issued so far has finished (nothing to wait for on a CPU)."""

    @property
    @abstractmethod
    def kernels(self) -> str:
        """What is timed, in words (the profile's `measured.kernels`)."""

    @property
    @abstractmethod
    def threads(self) -> int:
        """Threads the kernels run on (1 for a GPU backend: its host thread)."""

    @abstractmethod
    def figures(self, quick: bool) -> HostFigures:
        """The device's memory, bandwidth, peak arithmetic and per-call overhead, with how each was found."""

    @abstractmethod
    def compute(self, fmt: str) -> tuple[str, bool]:
        """(compute type, native) of `fmt` on this target: the profile's `formats` entry."""

    @property
    @abstractmethod
    def formats_source(self) -> str:
        """How the target runs the formats, for the profile's `sources.formats`."""

    @property
    def device_name(self) -> str:
        """The device the kernels run on, in words."""
        return cpu_name()

    def dispatch_us(self, calls: int) -> float:
        """Microseconds of one fp16 linear of a (16 x 64) weight and one token: the fixed cost of a call."""
        fmt = parse_format("fp16")
        rng = np.random.default_rng(0)
        packed = fmt.quantize(rng.standard_normal(_DISPATCH_SHAPE, dtype=np.float32))
        call = self.call(fmt, packed, _DISPATCH_SHAPE, rng.standard_normal((1, _DISPATCH_SHAPE[1]), dtype=np.float32))
        seconds_per_call(call, 10, self.synchronize)  # warm-up
        return statistics.median(seconds_per_call(call, max(1, calls // 5), self.synchronize) for _ in range(5)) * 1e6


class HostTarget(ProfileTarget):
    """A backend on this machine's CPU: numpy measures the host, every format computes in fp32."""

    kind = "cpu"

    def figures(self, quick: bool) -> HostFigures:
        return measure_host(quick, dispatch=self)

    def compute(self, fmt: str) -> tuple[str, bool]:
        return "fp32", False


class ReferenceTarget(HostTarget):
    """The reference backend: dequantize to float32, then numpy's x @ W.T."""

    backend = "reference"

    def call(self, fmt, packed, shape, x):
        return lambda: linear_kernel(fmt, packed, shape, x)

    @property
    def kernels(self) -> str:
        return "numpy reference (dequantize to float32, then x @ W.T in float32)"

    @property
    def threads(self) -> int:
        return kernel_threads()

    @property
    def formats_source(self) -> str:
        return ("the numpy reference kernels run every format by dequantizing to float32 "
                "(fp16 and bf16 by a cast) and multiplying in fp32")


class CpuTarget(HostTarget):
    """The cpu backend: the SIMD kernels computing straight from the stored buffers, exact accuracy."""

    backend = "cpu"

    def __init__(self, threads: int | None = None) -> None:
        from edgec.runtime.backends import make_backend

        self._backend = make_backend("cpu", threads=threads)
        from edgec.kernels import cpu

        self._cpu = cpu

    def call(self, fmt, packed, shape, x):
        kernel, _ = self._backend.kernel(fmt, packed, shape)
        return lambda: kernel(x)

    @property
    def kernels(self) -> str:
        return f"edgec cpu kernels ({self._cpu.simd()}, exact: weights decoded in registers, fp32 arithmetic)"

    @property
    def threads(self) -> int:
        return self._cpu.threads()

    @property
    def formats_source(self) -> str:
        return (f"the cpu backend's {self._cpu.simd()} kernels decode every format's stored values in registers "
                f"and multiply-accumulate in fp32")


class TritonTarget(ProfileTarget):
    """The triton backend: fused dequantize-and-multiply kernels, weight and activations on the GPU.

    Without a GPU it runs in Triton's interpreter on CPU tensors when TRITON_INTERPRET=1 is
    set: the profile is then written (so the path can be tested) but its timings are the
    interpreter's, and its description says so.
    """

    backend, kind = "triton", "gpu"
    min_sample_s = 1e-3  # amortizes the synchronization and the timer around microsecond kernels
    shapes = DEFAULT_SHAPES + LLAMA_7B_SHAPES
    tokens = DEFAULT_TOKENS + (512,)

    def __init__(self) -> None:
        from edgec.runtime.backends.triton import triton_reason

        reason = triton_reason()
        if reason is not None:
            raise EdgecError(f"cannot profile the triton backend: {reason}")
        import torch

        from edgec.kernels import triton as tk

        self._torch, self._tk = torch, tk
        self.interpreted = os.environ.get("TRITON_INTERPRET") == "1"
        self.device = torch.device("cpu" if self.interpreted else "cuda")

    @property
    def device_name(self) -> str:
        return "Triton interpreter on the CPU" if self.interpreted else self._torch.cuda.get_device_name(self.device)

    def call(self, fmt, packed, shape, x):
        torch, tk = self._torch, self._tk
        weight = tk.prepare(fmt, packed, shape, device=self.device)
        xd = torch.from_numpy(x).to(self.device)
        out = torch.empty((x.shape[0], shape[0]), dtype=torch.float32, device=self.device)
        return lambda: tk.linear(weight, xd, out)

    def synchronize(self) -> None:
        if not self.interpreted:
            self._torch.cuda.synchronize(self.device)

    @property
    def kernels(self) -> str:
        where = ("in Triton's interpreter: timings of the interpreter, not of a GPU" if self.interpreted
                 else f"on {self.device_name}")
        return (f"edgec triton kernels {where} (split-K float32 GEMV for up to 16 tokens, float16 tl.dot GEMM "
                f"above; weight and activations resident on the device)")

    @property
    def threads(self) -> int:
        return 1

    def compute(self, fmt: str) -> tuple[str, bool]:
        if fmt == "fp16":
            return "fp16", True
        return ("fp32" if fmt == "bf16" else "fp16"), False

    @property
    def formats_source(self) -> str:
        return ("the triton kernels decode every format's stored values in the tile (fp16 natively) and multiply "
                "in float16 on the tensor cores with float32 accumulation (bf16 weights as tf32, so fp32)")

    def figures(self, quick: bool) -> HostFigures:
        torch = self._torch
        if self.interpreted:
            memory, fraction, how = measure_memory()
            how, usable = f"{how} (interpreter: the host's memory)", "the host's MemAvailable / MemTotal"
        else:
            memory = torch.cuda.get_device_properties(self.device).total_memory
            free, _ = torch.cuda.mem_get_info(self.device)
            fraction = usable_fraction(free, memory)
            how, usable = "torch.cuda.get_device_properties total_memory", "free / total device memory"
        mib = 16 if quick or self.interpreted else 1024
        src = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=self.device)
        dst = torch.empty_like(src)
        bandwidth = 2 * src.nbytes / self._best(lambda: dst.copy_(src), 3 if quick else 10) / 1e9
        size = 256 if quick or self.interpreted else 8192
        peaks = {}
        for name, dtype in (("fp16", torch.float16), ("fp32", torch.float32)):
            a = torch.randn((size, size), dtype=torch.float32, device=self.device).to(dtype)
            b = torch.randn((size, size), dtype=torch.float32, device=self.device).to(dtype)
            peaks[name] = 2 * size**3 / self._best(lambda a=a, b=b: a @ b, 2 if quick else 10) / 1e12
        dispatch = self.dispatch_us(50 if self.interpreted else 500)
        return HostFigures(
            memory_bytes=int(memory), usable_memory_fraction=fraction, bandwidth_gbs=bandwidth,
            peak_tops=peaks, dispatch_us=dispatch,
            sources={
                "memory_bytes": how,
                "usable_memory_fraction": f"{usable} when profiled, rounded down to 5 % (0.1 to 0.9)",
                "bandwidth_gbs": f"torch copy of {mib} MiB float32 on the device, (read + written bytes) / best run",
                "peak_tops": f"torch matmul {size}x{size}x{size} in float16 and in float32 (torch's default, no tf32), "
                             f"2 N^3 / best of runs",
                "dispatch_us": f"median time of one call of the triton fp16 linear on a {_DISPATCH_SHAPE[0]}x"
                               f"{_DISPATCH_SHAPE[1]} weight and one token, calls issued back to back",
            },
        )

    def _best(self, call: Call, repeats: int) -> float:
        """Seconds of the fastest of `repeats` calls (after one warm-up), each waited for."""
        seconds_per_call(call, 1, self.synchronize)
        return min(seconds_per_call(call, 1, self.synchronize) for _ in range(repeats))


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def profile_target(name: str = "auto", threads: int | None = None) -> ProfileTarget:
    """The target for backend `name` ('auto': the one the runtime picks here); clear errors otherwise."""
    if name not in TARGETS:
        raise EdgecError(f"unknown backend {name!r} to profile; choose one of {', '.join(TARGETS)}")
    if name == "auto":
        from edgec.runtime.backends import make_backend

        name = make_backend("auto").name
    if threads is not None and name != "cpu":
        raise EdgecError(f"--threads sets the cpu backend's threads; the {name} backend does not take it")
    if name == "reference":
        return ReferenceTarget()
    if name == "cpu":
        from edgec.runtime.backends.cpu import cpu_kernels_reason

        reason = cpu_kernels_reason()
        if reason is not None:
            raise EdgecError(f"cannot profile the cpu backend: {reason}")
        return CpuTarget(threads)
    return TritonTarget()
