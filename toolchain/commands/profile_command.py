"""`edgec profile`: measure this machine's kernels and figures into a device profile."""

from __future__ import annotations

import json

import click

from edgec.commands.options import json_option


@click.command("profile")
@click.option("--output", "-o", required=True, type=click.Path(), metavar="PATH",
              help="Where to write the profile YAML, e.g. devices/host.yaml (replaced if it exists).")
@click.option("--backend", default="auto", show_default=True, metavar="NAME",
              help="Whose kernels to time: reference, cpu or triton (GPU); auto is the one `edgec run` picks here.")
@click.option("--name", default=None,
              help="The profile's name (`edgec plan --device NAME`); it is the output file's name without .yaml.")
@click.option("--formats", default=None, metavar="F1,F2,...",
              help="Formats to time (default: the ten formats the planner chooses among, without group 32).")
@click.option("--threads", type=int, default=None, help="Threads for the cpu backend's kernels (default: every CPU).")
@click.option("--quick", is_flag=True, help="A few small shapes and shorter measurements (seconds; for tests).")
@json_option
def profile_command(output, backend, name, formats, threads, quick, as_json) -> None:
    """Micro-benchmark a runtime backend here and write the device profile NAME to PATH.

    Times the backend's linear kernel (the numpy reference; the cpu backend's SIMD kernels;
    or the Triton kernels with weight and activations on the GPU) for every format, over a
    spread of transformer weight shapes (a GPU's also a 7B model's) and 1, 16 and 128 tokens
    (a GPU's also 512), and measures the device's
    memory capacity, bandwidth, peak matmul and the fixed cost of a call. The profile keeps
    the timings; the planner fits its latency predictor to them. Prints the predictor's
    error on held-out shapes (mean absolute percentage error), overall and per format.
    The reference backend's BLAS runs with the threads OPENBLAS_NUM_THREADS /
    OMP_NUM_THREADS allow, the cpu backend with --threads (default: every CPU); the
    profile records how many.
    """
    import datetime
    import re
    import time
    from pathlib import Path

    from edgec.core.errors import EdgecError, FormatError
    from edgec.core.formats import parse_format
    from edgec.planner import profiling
    from edgec.planner.predictor import fit_predictor
    from edgec.planner.profile_targets import profile_target
    from edgec.planner.profiles import save_profile, validate_profile

    path = Path(output)
    if path.is_dir():
        raise EdgecError(f"{output}: is a directory; give the path of the YAML file to write")
    if not path.parent.is_dir():
        raise EdgecError(f"{output}: directory {path.parent} does not exist")
    name = path.stem if name is None else name
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise EdgecError(f"--name {name!r}: a profile name is lower-case letters, digits, '.', '_' and '-'")
    if name != path.stem or path.suffix not in (".yaml", ".yml"):
        raise EdgecError(f"{output}: a profile named {name!r} is written to {name}.yaml (plans find a profile by its file's name)")
    texts = profiling.HOST_FORMATS if formats is None else [f.strip() for f in formats.split(",") if f.strip()]
    if not texts:
        raise EdgecError("--formats: give at least one format")
    try:  # an unknown format is refused before anything is measured
        chosen = tuple(dict.fromkeys(str(parse_format(text)) for text in texts))
    except FormatError as exc:
        raise EdgecError(f"--formats: {exc}") from None
    target = profile_target(backend, threads)
    shapes = profiling.QUICK_SHAPES if quick else target.shapes
    try:
        for text in chosen:
            for shape in shapes:
                parse_format(text).check_shape(shape)
    except FormatError as exc:
        raise EdgecError(f"--formats: {exc}") from None

    start = time.perf_counter()
    today = datetime.date.today().isoformat()
    figures = target.figures(quick)
    timings = profiling.measure_kernels(chosen, shapes, profiling.QUICK_TOKENS if quick else target.tokens,
                                        target=target, budget_s=2.0 if quick else profiling.DEFAULT_BUDGET_S,
                                        repeats=5 if quick else 7, progress=True)
    said = f"measured by edgec profile on {today}"
    data = {
        "name": name,
        "kind": target.kind,
        "description": f"this machine ({target.device_name}), {target.kernels}, {target.threads} thread(s)",
        "memory_bytes": figures.memory_bytes,
        "usable_memory_fraction": figures.usable_memory_fraction,
        "bandwidth_gbs": round(figures.bandwidth_gbs, 2),
        "peak_tops": {kind: round(value, 4) for kind, value in figures.peak_tops.items()},
        "dispatch_us": round(figures.dispatch_us, 3),
        "formats": {f: dict(zip(("compute", "native"), target.compute(f))) for f in chosen},
        "sources": {
            **{field: f"{said}, {how}" for field, how in figures.sources.items()},
            "formats": f"{said}: {target.formats_source}",
        },
        "measured": {"kernels": target.kernels, "threads": target.threads, "date": today,
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
        "output": str(path), "name": name, "backend": target.backend, "kind": target.kind,
        "kernels": target.kernels, "seconds": round(seconds, 1), "threads": target.threads,
        "memory_bytes": profile.memory_bytes, "bandwidth_gbs": profile.bandwidth_gbs,
        "peak_tflops": profile.peak_tops, "dispatch_us": profile.dispatch_us,
        "timings": len(timings), "mape_heldout": fit.mape_heldout, "mape_by_format": fit.mape_by_format,
        "fitted_on": fit.samples, "heldout": fit.heldout,
        "heldout_shapes": [list(s) for s in fit.heldout_shapes], "cache_bytes": fit.model.cache_bytes,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from edgec.planner.sizes import format_size

    peaks = ", ".join(f"{kind} {value * 1e3:,.0f}" for kind, value in profile.peak_tops.items())
    click.echo(f"{name} ({target.backend} backend, {target.threads} thread(s)): memory "
               f"{format_size(profile.memory_bytes)}, copy bandwidth {profile.bandwidth_gbs:,.1f} GB/s, "
               f"peak {peaks} GFLOPS, dispatch {profile.dispatch_us:.2f} us")
    shapes_text = ", ".join(f"{n}x{k}" for n, k in fit.heldout_shapes)
    click.echo(f"latency predictor: held-out MAPE {100 * fit.mape_heldout:.1f} % on {fit.heldout} timings "
               f"of shapes {shapes_text} (fitted on {fit.samples}; spill cache {fit.model.cache_bytes // 2**20} MiB)")
    width = max(len(fmt) for fmt in fit.mape_by_format)
    for fmt, mape in fit.mape_by_format.items():
        click.echo(f"  {fmt:<{width}}  {100 * mape:5.1f} %")
    click.echo(f"wrote {path} ({len(timings)} kernel timings, {seconds:.0f} s)")

