"""`edgec bench`'s measurements: open time, time to first token, prefill and decode speed, and memory.

Cold and warm are apart. The first token is cold: it counts opening the file, preparing the
weights and the first prefill, with whatever a backend does once (Triton compiles and
autotunes its kernels there, the CPU touches the mapped pages). Prefill and decode speeds are
warm: after that cold prefill and `WARMUP_DECODE` decode steps, a second prefill of the same
prompt into a fresh KV cache is timed, and the decode steps that follow it. The planner's
latency calibration (`--append-profile`) takes the warm figures, which are what a long-running
app sees.

Everything is measured in this process on the runtime (no torch involved). Memory is the
process's resident set: its peak, and the parts that make it up — the weights as the
backend keeps them (mapped file pages, plus any converted copies), the KV cache at the
tokens used, and the rest (scratch, the interpreter and libraries).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np

from edgec.core.memory import current_rss_bytes

WARMUP_DECODE = 4  # decode steps after the cold prefill, before anything is timed warm


@dataclass
class BenchResult:
    """One `edgec bench` run; seconds and bytes, rates in tokens per second."""

    backend: str
    accuracy: str  # exact, or int8 activations
    threads: int  # the cpu kernels' threads, or the CPUs numpy may use on the reference backend
    prompt_tokens: int
    generated_tokens: int
    open_s: float  # open the file and prepare every weight on the backend
    first_token_s: float  # cold: open + the first prefill + the first token
    cold_prefill_tokens_per_s: float  # the first prefill, one-time work included
    prefill_tokens_per_s: float  # warm (see the module docstring)
    decode_tokens_per_s: float  # warm
    warmup_decode_steps: int
    peak_rss: int
    baseline_rss: int  # before the file was opened
    weights_file_bytes: int  # the stored tensors, mapped from the file
    weights_prepared_bytes: int  # what the backend converted and holds besides the mapping
    kv_cache_bytes: int  # at prompt + generated tokens
    plan: dict | None = None  # the file's plan figures beside the measured ones

    @property
    def other_bytes(self) -> int:
        """Peak RSS not explained by the baseline, the weights and the KV cache."""
        return self.peak_rss - self.baseline_rss - self.weights_file_bytes - self.weights_prepared_bytes - self.kv_cache_bytes

    def to_json(self) -> dict:
        return {**asdict(self), "other_bytes": self.other_bytes}


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far."""
    scale = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _threads(backend: str) -> int:
    """The cpu kernels' threads, else the threads numpy's BLAS may use (as `edgec profile` records)."""
    if backend == "cpu":
        from edgec.kernels import cpu

        return cpu.threads()
    from edgec.planner.profiling import kernel_threads

    return kernel_threads()


def run_bench(path: str, prompt_ids: list[int], generate: int, backend: str = "auto",
              context: int | None = None, accuracy: str = "exact", threads: int | None = None) -> BenchResult:
    """Open `path`, prefill `prompt_ids` cold, warm up, then prefill again and decode `generate` tokens greedily,
    timing each part (see the module docstring)."""
    from edgec.runtime import load

    baseline = current_rss_bytes()
    start = time.perf_counter()
    model = load(path, backend=backend, context=context, accuracy=accuracy, threads=threads)
    opened = time.perf_counter()
    cache = model.new_cache()
    token = int(np.argmax(model.forward(prompt_ids, cache, all_logits=False)[-1]))
    first = time.perf_counter()
    for _ in range(WARMUP_DECODE):
        token = int(np.argmax(model.forward([token], cache, all_logits=False)[-1]))
    del cache  # one KV cache at a time
    cache = model.new_cache()
    warm = time.perf_counter()
    token = int(np.argmax(model.forward(prompt_ids, cache, all_logits=False)[-1]))
    prefilled = time.perf_counter()
    for _ in range(generate - 1):
        token = int(np.argmax(model.forward([token], cache, all_logits=False)[-1]))
    done = time.perf_counter()
    c = model.config
    kv = 2 * c.layers * cache.length * c.kv_dim * 4
    result = BenchResult(
        backend=model.backend.name, accuracy=accuracy, threads=_threads(model.backend.name),
        prompt_tokens=len(prompt_ids), generated_tokens=generate, open_s=opened - start, first_token_s=first - start,
        cold_prefill_tokens_per_s=len(prompt_ids) / (first - opened),
        prefill_tokens_per_s=len(prompt_ids) / (prefilled - warm),
        decode_tokens_per_s=(generate - 1) / (done - prefilled) if generate > 1 else 0.0,
        warmup_decode_steps=WARMUP_DECODE,
        peak_rss=peak_rss_bytes(), baseline_rss=baseline,
        weights_file_bytes=sum(e.nbytes for e in model.file.tensors.values()),
        weights_prepared_bytes=model.weights.nbytes, kv_cache_bytes=kv)
    plan = model.file.metadata["edgec.plan"]
    if plan:
        totals = plan["totals"]
        result.plan = {"device": plan["device"]["name"], "weights_bytes": totals["weights_bytes"],
                       "decode_tokens_per_s": 1e3 / totals["decode_ms"],
                       "prefill_tokens_per_s": plan["settings"]["prompt_tokens"] / (totals["prefill_ms"] / 1e3)}
    return result
