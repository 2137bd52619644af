"""`edgec profile`: measure this machine's kernels and figures into a device profile."""

from __future__ import annotations

import json
import sys

import click

from edgec.commands.options import json_option


@click.command("profile")
@click.option("--output", "-o", required=True, type=click.Path(), metavar="PATH",
              help="Where to write the profile YAML, e.g. devices/host.yaml (replaced if it exists).")
@click.option("--quick", is_flag=True, help="A few small shapes and shorter measurements (seconds; for tests).")
@json_option
def profile_command(output, quick, as_json) -> None:
    """Micro-benchmark this machine and write its device profile `host` to PATH.

    Times the runtime's reference linear (dequantize the stored weight to float32, then
    x @ W.T in numpy) for every format the host runs, over a spread of transformer
    weight shapes and 1, 16 and 128 tokens, and measures memory capacity, copy
    bandwidth, peak fp32 matmul and the dispatch overhead of a call. The profile keeps
    the timings; the planner fits its latency predictor to them. Prints the predictor's
    error on held-out shapes (mean absolute percentage error), overall and per format.
    BLAS runs with the threads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS allow (default:
    every CPU); the profile records how many.
    """
    import datetime
    import time
    from pathlib import Path

    from edgec.errors import EdgecError
    from edgec.planner import profiling
    from edgec.planner.predictor import fit_predictor
    from edgec.planner.profiles import save_profile, validate_profile

    path = Path(output)
    if path.is_dir():
        raise EdgecError(f"{output}: is a directory; give the path of the YAML file to write")
    if not path.parent.is_dir():
        raise EdgecError(f"{output}: directory {path.parent} does not exist")

    start = time.perf_counter()
    today = datetime.date.today().isoformat()
    host = profiling.measure_host(quick=quick)
    shapes = profiling.QUICK_SHAPES if quick else profiling.DEFAULT_SHAPES
    timings = profiling.measure_kernels(profiling.HOST_FORMATS, shapes, profiling.DEFAULT_TOKENS,
                                        budget_s=2.0 if quick else profiling.DEFAULT_BUDGET_S,
                                        repeats=5 if quick else 7, progress=sys.stderr.isatty())
    threads = profiling.kernel_threads()
    said = f"measured by edgec profile on {today}"
    data = {
        "name": "host",
        "kind": "cpu",
        "description": f"this machine ({_cpu_name()}), numpy reference kernels on {threads} BLAS thread(s)",
        "memory_bytes": host.memory_bytes,
        "usable_memory_fraction": host.usable_memory_fraction,
        "bandwidth_gbs": round(host.bandwidth_gbs, 2),
        "peak_tops": {"fp32": round(host.peak_fp32_tflops, 4)},
        "dispatch_us": round(host.dispatch_us, 3),
        "formats": {f: {"compute": "fp32", "native": False} for f in profiling.HOST_FORMATS},
        "sources": {
            **{name: f"{said}, {how}" for name, how in host.sources.items()},
            "formats": f"{said}: the numpy reference kernels run every format by dequantizing to float32 "
                       f"(fp16 and bf16 by a cast) and multiplying in fp32",
        },
        "measured": {"kernels": profiling.KERNELS, "threads": threads, "date": today,
                     "timings": [t.model_dump() for t in timings]},
    }
    profile = validate_profile(data, "measured profile")
    fit = fit_predictor(profile)
    try:
        save_profile(profile, path)
    except OSError as exc:
        raise EdgecError(f"{output}: cannot write the profile ({exc.strerror or exc})") from None
    seconds = time.perf_counter() - start

    report = {
        "output": str(path), "seconds": round(seconds, 1), "threads": threads,
        "memory_bytes": profile.memory_bytes, "bandwidth_gbs": profile.bandwidth_gbs,
        "peak_fp32_tflops": profile.peak_tops["fp32"], "dispatch_us": profile.dispatch_us,
        "timings": len(timings), "mape_heldout": fit.mape_heldout, "mape_by_format": fit.mape_by_format,
        "fitted_on": fit.samples, "heldout": fit.heldout,
        "heldout_shapes": [list(s) for s in fit.heldout_shapes], "cache_bytes": fit.model.cache_bytes,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from edgec.planner.sizes import format_size

    click.echo(f"host: memory {format_size(profile.memory_bytes)}, copy bandwidth {profile.bandwidth_gbs:.1f} GB/s, "
               f"peak fp32 {profile.peak_tops['fp32'] * 1e3:.0f} GFLOPS, dispatch {profile.dispatch_us:.2f} us "
               f"({threads} BLAS thread(s))")
    shapes_text = ", ".join(f"{n}x{k}" for n, k in fit.heldout_shapes)
    click.echo(f"latency predictor: held-out MAPE {100 * fit.mape_heldout:.1f} % on {fit.heldout} timings "
               f"of shapes {shapes_text} (fitted on {fit.samples}; spill cache {fit.model.cache_bytes // 2**20} MiB)")
    width = max(len(name) for name in fit.mape_by_format)
    for name, mape in fit.mape_by_format.items():
        click.echo(f"  {name:<{width}}  {100 * mape:5.1f} %")
    click.echo(f"wrote {path} ({len(timings)} kernel timings, {seconds:.0f} s)")


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` says."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
