"""CPU kernels (edgec.kernels.cpu) against numpy's float32 matmul, on the default model's layer shapes.

    python benchmarks/cpu_kernels.py                        # every format example, M = 1 and 64 (a few minutes)
    python benchmarks/cpu_kernels.py --quick                # three formats, few runs: checks the script works
    python benchmarks/cpu_kernels.py --formats int4:g128,int8 --threads 1 --json cpu.json
    OPENBLAS_NUM_THREADS=1 python benchmarks/cpu_kernels.py --alternatives --threads 1   # int4 by numpy, numba, torch

Shapes are SmolLM2-135M's (hidden 576, intermediate 1536, 9 heads and 3 kv heads of 64):
a block's fused qkv (960, 576), o (576, 576), fused gate+up (3072, 576), down (576, 1536),
and the head (49152, 576). For each format, M (tokens per call) and shape the script first
validates the kernel against `x @ fmt.dequantize(...).T` (validate, then benchmark), then
times `linear(p, x, out)`: the median of many calls. The baseline is what the reference
backend runs, `x @ W_t` with W_t a float32 (K, N) copy, timed the same way.

Two cache regimes:

* hot: the same weight every call, so it stays in cache (numpy's 2.2 MB float32 qkv fits
  in L3 as well as a 0.3 MB int4 one does);
* streamed: calls cycle through copies of the weight totalling over 64 MiB, more than the
  L3, as a model larger than the cache runs (SmolLM2-135M is 70 MB at int4).

Reported per format: time of one block (qkv + o + gate_up + down) and of the head, the
effective GB/s of stored weight bytes read, and numpy's time over the kernel's (x faster).
For int4 and int8 weights the int8-activation path (accuracy="int8") is timed too: per row at
M <= 4, the tiled AVX-VNNI/AVX2 kernel (q8_gemm.c) above.
Timings are only meaningful on an otherwise idle machine: the load average is printed, and
a warning when it is above 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from edgec.core.formats import Format, parse_format, registered_families
from edgec.kernels import cpu

HIDDEN, INTER, HEAD_DIM, KV_HEADS, VOCAB = 576, 1536, 64, 3, 49152
BLOCK = {"qkv": (HIDDEN + 2 * KV_HEADS * HEAD_DIM, HIDDEN), "o": (HIDDEN, HIDDEN),
         "gate_up": (2 * INTER, HIDDEN), "down": (HIDDEN, INTER)}
HEAD = {"head": (VOCAB, HIDDEN)}
STREAM_BYTES = 64 << 20


def median_time(fn, runs: int, min_seconds: float = 0.2) -> float:
    """Median seconds of `fn()` over at least `runs` calls (more while under min_seconds)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs or (time.perf_counter() - start < min_seconds and len(times) < 50 * runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def copies_for(nbytes: int, streamed: bool) -> int:
    """How many copies of a weight to cycle through so that they do not stay in cache."""
    return max(1, min(256, -(-STREAM_BYTES // nbytes))) if streamed else 1


def cycle(fns: list):
    """A callable running the next of `fns` on each call."""
    state = {"i": 0}

    def run():
        fns[state["i"] % len(fns)]()
        state["i"] += 1
    return run


def validate(fmt: Format, packed: dict, shape: tuple[int, int], p: cpu.PreparedWeight, x: np.ndarray) -> None:
    """The kernel equals the numpy reference to float32 summation-order tolerance, else exit."""
    w = fmt.dequantize(packed, shape).astype(np.float64)
    ref = x.astype(np.float64) @ w.T
    tol = 1e-5 * np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :] + 1e-30
    if not (np.abs(cpu.linear(p, x) - ref) <= tol).all():
        sys.exit(f"validation failed: {fmt} {shape} M={len(x)}")


def bench_numpy(shapes: dict, ms: list[int], regimes: list[str], runs: int, rng) -> dict:
    """[regime][m][shape] seconds per call of x @ W_t (float32)."""
    out: dict = {r: {m: {} for m in ms} for r in regimes}
    for name, (n, k) in shapes.items():
        for regime in regimes:
            w_ts = [rng.standard_normal((k, n), dtype=np.float32) for _ in range(copies_for(n * k * 4, regime == "streamed"))]
            for m in ms:
                x = rng.standard_normal((m, k), dtype=np.float32)
                y = np.empty((m, n), np.float32)
                out[regime][m][name] = median_time(cycle([lambda w_t=w_t: np.matmul(x, w_t, out=y) for w_t in w_ts]), runs)
            del w_ts
    return out


def bench_format(fmt: Format, shapes: dict, ms: list[int], regimes: list[str], runs: int, rng) -> dict:
    """[regime][m][shape] -> seconds per call (exact, and int8 activations where they apply) and stored bytes."""
    out: dict = {r: {m: {} for m in ms} for r in regimes}
    for name, (n, k) in shapes.items():
        if fmt.is_sparse and k % 4:
            continue
        shape = (n, k)
        packed = fmt.quantize(rng.standard_normal(shape, dtype=np.float32) * 0.05)
        p = cpu.prepare(fmt, packed, shape)
        xs = {m: rng.standard_normal((m, k), dtype=np.float32) for m in ms}
        for m in ms:
            validate(fmt, packed, shape, p, xs[m][:3])
        for regime in regimes:
            # copies: the same stored bytes at other addresses
            preps = [p] + [cpu.prepare(fmt, {b: a.copy() for b, a in packed.items()}, shape)
                           for _ in range(copies_for(fmt.nbytes(shape), regime == "streamed") - 1)]
            for m in ms:
                x, y = xs[m], np.empty((m, n), np.float32)
                entry = {"bytes": fmt.nbytes(shape),
                         "exact": median_time(cycle([lambda q=q: cpu.linear(q, x, y) for q in preps]), runs)}
                if p.int8_activations:
                    entry["int8"] = median_time(cycle([lambda q=q: cpu.linear(q, x, y, accuracy="int8") for q in preps]), runs)
                out[regime][m][name] = entry
            del preps
    return out


def report(results: dict, base: dict, m: int, regime: str) -> None:
    """One table: per format, block and head time, GB/s of stored weights, numpy / kernel."""
    print(f"\nM = {m}, {regime} (numpy float32: block {sum(base[s] for s in BLOCK) * 1e6:.0f} us, "
          f"head {base['head'] * 1e6:.0f} us)")
    print(f"{'format':>20} | {'block us':>9} {'GB/s':>6} {'x numpy':>7} | {'head us':>9} {'GB/s':>6} {'x numpy':>7}"
          + " | int8-act block us, head us")
    for fmt, per in results.items():
        cols = []
        for group in (BLOCK, HEAD):
            if not all(s in per for s in group):
                cols.append(f"{'-':>9} {'-':>6} {'-':>7}")
                continue
            t = sum(per[s]["exact"] for s in group)
            gb = sum(per[s]["bytes"] for s in group) / t / 1e9
            cols.append(f"{t * 1e6:9.1f} {gb:6.1f} {sum(base[s] for s in group) / t:7.2f}")
        line = f"{fmt:>20} | " + " | ".join(cols)
        if all("int8" in per.get(s, {}) for s in (*BLOCK, *HEAD)):
            line += f" | {sum(per[s]['int8'] for s in BLOCK) * 1e6:9.1f} {per['head']['int8'] * 1e6:9.1f}"
        print(line)


# ---- why a C extension: the same int4 product by other means -----------------------------------

def numba_int4_linear():
    """An int4 (symmetric) x @ W^T in numba, dequantizing exactly as the C kernels do; None without numba."""
    try:
        import numba
    except ImportError:
        return None

    numba.set_num_threads(min(cpu.threads(), numba.config.NUMBA_NUM_THREADS))

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def run(q, scale, x, y, group):  # q (N, K/2) uint8, scale (N, ng) float32, x (M, K), y (M, N); K even
        for n in numba.prange(q.shape[0]):
            for i in range(x.shape[0]):
                acc = np.float32(0.0)
                for g in range(scale.shape[1]):
                    s = scale[n, g]
                    for b in range(g * group // 2, min((g + 1) * group, x.shape[1]) // 2):
                        byte = q[n, b]
                        acc += np.float32(np.int32(byte & 15) - 8) * s * x[i, 2 * b]
                        acc += np.float32(np.int32(byte >> 4) - 8) * s * x[i, 2 * b + 1]
                y[i, n] = acc
    return run


def torch_int4_linear(codes: np.ndarray, scale: np.ndarray, group: int):
    """torch's CPU int4 kernel (_weight_int4pack_mm_for_cpu) for the same weight; None if torch lacks it.

    Activations go in as bfloat16: with float32 ones torch takes a slow generic path (50x slower here).
    """
    try:
        import torch
        convert = torch.ops.aten._convert_weight_to_int4pack_for_cpu
        mm = torch.ops.aten._weight_int4pack_mm_for_cpu
    except (ImportError, AttributeError, RuntimeError):
        return None
    torch.set_num_threads(cpu.threads())
    packed = convert(torch.from_numpy(codes.astype(np.int32)), 1)
    # w = (q - 8) * scale + zero, with zero = 0: the symmetric format exactly
    sz = torch.stack([torch.from_numpy(scale.T.copy()), torch.zeros(scale.T.shape)], dim=2).to(torch.bfloat16)
    return lambda x: mm(torch.from_numpy(x).to(torch.bfloat16), packed, group, sz.contiguous()).float().numpy()


def alternatives(runs: int) -> None:
    """int4:g64 on the qkv and gate_up shapes by every means at hand, M = 1 and 64.

    numba and torch get the kernels' thread count. Run with --threads 1 and
    OPENBLAS_NUM_THREADS=1 for a clean comparison: thread pools that spin (OpenBLAS's, OpenMP's)
    stall one another on 2 cores.
    """
    fmt = parse_format("int4:g64")
    rng = np.random.default_rng(0)
    nb = numba_int4_linear()
    print(f"\nint4:g64 by other means (us per call; numba {'present' if nb else 'absent'})")
    print(f"{'shape':>12} {'M':>3} | {'C exact':>8} {'C int8':>8} | {'numpy dequant+matmul':>20} | {'numba':>8} | "
          f"{'torch int4pack (bf16 x)':>23}")
    for name in ("qkv", "gate_up"):
        n, k = BLOCK[name]
        packed = fmt.quantize(rng.standard_normal((n, k), dtype=np.float32) * 0.05)
        w = fmt.dequantize(packed, (n, k))
        enc = fmt.unpack(packed, (n, k))
        scale = enc["scale"].astype(np.float32)
        p = cpu.prepare(fmt, packed, (n, k))
        th = torch_int4_linear(enc["codes"].astype(np.int32) + 8, scale, 64)
        for m in (1, 64):
            x = rng.standard_normal((m, k), dtype=np.float32)
            y = np.empty((m, n), np.float32)
            ref = x.astype(np.float64) @ w.T.astype(np.float64)
            cols = [median_time(lambda: cpu.linear(p, x, y), runs) * 1e6]
            cols.append(median_time(lambda: cpu.linear(p, x, y, accuracy="int8"), runs) * 1e6 if m == 1 else float("nan"))
            cols.append(median_time(lambda: x @ fmt.dequantize(packed, (n, k)).T, runs) * 1e6)
            if nb:
                nb(packed["qdata"], scale, x, y, 64)
                assert np.allclose(y, ref, rtol=1e-4, atol=1e-3), "numba kernel disagrees with the reference"
                cols.append(median_time(lambda: nb(packed["qdata"], scale, x, y, 64), runs) * 1e6)
            else:
                cols.append(float("nan"))
            if th:
                err = np.abs(th(x) - ref).max() / np.abs(ref).max()  # bfloat16 activations: about 1e-2
                assert err < 0.05, f"torch kernel disagrees with the reference ({err:.3f})"
                cols.append(median_time(lambda: th(x), runs) * 1e6)
            else:
                cols.append(float("nan"))
            print(f"{str((n, k)):>12} {m:>3} | {cols[0]:8.1f} {cols[1]:8.1f} | {cols[2]:20.1f} | {cols[3]:8.1f} | {cols[4]:23.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", help="comma-separated format strings (default: every registered example)")
    ap.add_argument("--m", default="1,64", help="tokens per call, comma-separated (default 1,64)")
    ap.add_argument("--threads", type=int, default=None, help="kernel threads (default: every CPU)")
    ap.add_argument("--regime", choices=("hot", "streamed", "both"), default="both")
    ap.add_argument("--runs", type=int, default=30, help="timed calls per measurement, at least")
    ap.add_argument("--quick", action="store_true", help="three formats, few runs")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--alternatives", action="store_true",
                    help="only compare int4 by numpy, numba (if importable) and torch's int4pack kernel")
    args = ap.parse_args()

    if not cpu.available():
        sys.exit(f"CPU kernels unavailable: {cpu.unavailable_reason()}")
    if args.threads:
        cpu.set_threads(args.threads)
    if args.formats:
        formats = [parse_format(s) for s in args.formats.split(",")]
    elif args.quick:
        formats = [parse_format(s) for s in ("int4:g128", "int8", "2:4+int4:g32")]
    else:
        formats = [f for cls in registered_families().values() for f in cls.examples()]
    runs = 3 if args.quick else args.runs
    regimes = ["hot", "streamed"] if args.regime == "both" else [args.regime]
    shapes = {**BLOCK, **HEAD}
    load = os.getloadavg()[0]
    print(f"simd {cpu.simd()}, {cpu.threads()} kernel threads, numpy {np.__version__}, load average {load:.2f}")
    if load > 0.5:
        print("warning: the machine is busy (load average above 0.5); the figures are indicative only")

    if args.alternatives:
        alternatives(runs)
        return

    rng = np.random.default_rng(0)
    ms = [int(v) for v in args.m.split(",")]
    base = bench_numpy(shapes, ms, regimes, runs, rng)
    results = {}
    for i, fmt in enumerate(formats):
        print(f"  [{i + 1}/{len(formats)}] {fmt}", file=sys.stderr)
        results[str(fmt)] = bench_format(fmt, shapes, ms, regimes, runs, rng)
    record = {"simd": cpu.simd(), "threads": cpu.threads(), "load_before": load, "numpy": base, "formats": results}
    for regime in regimes:
        for m in ms:
            report({f: r[regime][m] for f, r in results.items()}, base[regime][m], m, regime)
    record["load_after"] = os.getloadavg()[0]
    print(f"\nload average after: {record['load_after']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)


if __name__ == "__main__":
    main()
