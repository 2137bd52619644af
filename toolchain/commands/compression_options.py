"""The options that choose how a model is compressed, shared by `edgec compress` and `edgec export`.

`compression_options` adds them to a command, which receives one `CompressionOptions`
argument named `compression`; `run_compression` carries them out on a loaded model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edgec.commands.options import FiniteFloatRange, format_option

if TYPE_CHECKING:  # imported where used: the CLI starts without the planner
    from edgec.planner.plan_schema import Plan

class MethodChoice(click.Choice):
    """A choice among the compression passes (`edgec.passes.PASSES`), read when click first needs it: the
    passes import torch, and `edgec --help` or a refused option should not wait for that."""

    def __init__(self) -> None:
        super().__init__([])

    @property
    def choices(self) -> list[str]:
        from edgec.passes import PASSES

        return list(PASSES)

    @choices.setter
    def choices(self, _value) -> None:  # click.Choice.__init__ assigns the (empty) list given above
        pass


@dataclass(frozen=True)
class CompressionOptions:
    """Everything the compression options say; `fmt`, `plan_path` and `head_fmt` are all None when nothing is asked."""

    fmt: str | None
    plan_path: str | None
    method: str
    sparsity: float | None
    include_head: bool
    samples: int
    seq_len: int
    act_order: bool
    damp: float
    no_clip: bool
    alpha: float
    head_fmt: str | None = None  # the head's (and tied embedding's) own format, with --format

    @property
    def requested(self) -> bool:
        return self.fmt is not None or self.plan_path is not None or self.head_fmt is not None


_FIELDS = ("fmt", "plan_path", "method", "sparsity", "include_head", "samples", "seq_len", "act_order", "damp", "no_clip",
           "alpha", "head_fmt")
_OPTIONS = [
    format_option,
    click.option("--plan", "plan_path", default=None, type=click.Path(dir_okay=False), metavar="PLAN",
                 help="A plan from `edgec plan`: each layer's format and method (instead of --format/--method)."),
    click.option("--method", default="rtn", show_default=True, type=MethodChoice(),
                 help="Compression method for every layer."),
    click.option("--sparsity", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=None,
                 help="Unstructured sparsity for magnitude/wanda/sparsegpt with a 16-bit format (e.g. 0.5)."),
    click.option("--include-head", is_flag=True,
                 help="Also compress the output head (and the embedding tied to it); by RTN when --method is calibrated."),
    click.option("--head-format", "head_fmt", default=None, metavar="FORMAT",
                 help="With --format: store the output head (and the embedding tied to it) in this format instead, "
                      "by RTN (e.g. int8 beside int4 blocks, as llama.cpp's Q4 files keep a Q8_0 head)."),
    click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True, help="Calibration windows."),
    click.option("--seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per calibration window."),
    click.option("--act-order/--no-act-order", default=True, show_default=True,
                 help="GPTQ: visit columns by decreasing Hessian diagonal (with static groups)."),
    click.option("--damp", type=FiniteFloatRange(min=0, min_open=True), default=0.01, show_default=True,
                 help="GPTQ/SparseGPT: Hessian damping as a fraction of its mean diagonal."),
    click.option("--no-clip", is_flag=True,
                 help="AWQ and GPTQ: skip the clip search and fit each group's min-max range (GPTQ as originally published)."),
    click.option("--alpha", type=FiniteFloatRange(0, 1), default=0.5, show_default=True,
                 help="SmoothQuant: migration strength from activations to weights."),
]


def compression_options(command: Callable) -> Callable:
    """Add the compression options to a click command as one `compression` argument."""

    @functools.wraps(command)
    def wrapper(**kwargs):
        kwargs["compression"] = CompressionOptions(**{field: kwargs.pop(field) for field in _FIELDS})
        return command(**kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


@dataclass
class CompressionRun:
    """What `run_compression` did: the result, the plan it followed and the calibration it used."""

    result: object  # edgec.compress.CompressionResult
    plan: Plan | None
    calibration: object  # edgec.compress.CalibrationSettings


def check_compression(options: CompressionOptions) -> Plan | None:
    """Everything about the options that can be refused before a model is loaded; returns the plan read, if any."""
    from edgec.core.errors import EdgecError
    from edgec.core.formats import parse_format
    from edgec.planner.plan_file import read_plan

    if options.fmt is not None and options.plan_path is not None:
        raise EdgecError("give either --format (one format for every layer) or --plan (a plan from `edgec plan`), not both")
    if options.head_fmt is not None and options.fmt is None:
        raise EdgecError("--head-format goes with --format (a plan already names the head's format)")
    for text in (options.fmt, options.head_fmt):
        if text is not None:
            parse_format(text)
    return read_plan(Path(options.plan_path)) if options.plan_path is not None else None


def run_compression(loaded, options: CompressionOptions, plan: Plan | None, device=None,
                    spill: Path | None = None) -> CompressionRun:
    """Compress `loaded` in place as the options say (a format for every layer, or `plan`, which
    `check_compression` read before the model was loaded), calibrating on the torch `device` (None: the CPU);
    `spill`: a folder to create for the packed results (`edgec.compress.compress`)."""
    from edgec.assignment import uniform_assignment
    from edgec.compress import CalibrationSettings, compress, plan_passes
    from edgec.core.errors import EdgecError
    from edgec.core.formats import parse_format
    from edgec.passes import PASSES, LayerConfig, configured_passes
    from edgec.planner.plan_file import plan_request

    if plan is not None:
        request = plan_request(plan, loaded, Path(options.plan_path))
    else:
        fmt = parse_format(options.fmt)
        head = loaded.adapter.head(loaded.model)
        formats = uniform_assignment(loaded.model, loaded.adapter, fmt, options.include_head or options.head_fmt is not None)
        if options.head_fmt is not None:
            if head is None:
                raise EdgecError(f"--head-format: {loaded.name} has no output head")
            formats[head.name] = parse_format(options.head_fmt)
        method = options.method
        request = {name: LayerConfig(f, "rtn" if head is not None and name == head.name and (PASSES[method].calibrated
                                                                                           or options.head_fmt is not None)
                                     else method, options.sparsity or 0.0) for name, f in formats.items()}
    passes = configured_passes(damp=options.damp, act_order=options.act_order, clip=not options.no_clip,
                               alpha=options.alpha)
    plan_passes(loaded, request, passes)  # refuse bad combinations before calibration starts
    calibration = CalibrationSettings(samples=options.samples, seq_len=options.seq_len)
    _announce_expected(loaded, request, calibration, device)
    result = compress(loaded, request, calibration, passes, progress=True, device=device, spill=spill)
    return CompressionRun(result, plan, calibration)


def _announce_expected(loaded, request, calibration, device) -> None:
    """One stderr line, before any work: how long compression is expected to take and the memory it is expected
    to peak at, on the host and the GPU."""
    import torch

    from edgec.core.memory import current_rss_bytes
    from edgec.core.progress import duration
    from edgec.planner.compress_memory import compress_peak
    from edgec.planner.duration import ModelWork, compress_groups, compress_seconds, machine_speed
    from edgec.planner.sizes import format_size

    layers = {name: (config.format, config.method) for name, config in request.items()}
    peak = compress_peak(loaded, layers, current_rss_bytes(), device, calibration.samples, calibration.seq_len)
    work = ModelWork.of(loaded)
    speed = machine_speed(device or torch.device("cpu"), work.hidden, rows=calibration.batch_size * calibration.seq_len)
    seconds = compress_seconds(work, compress_groups(loaded, layers), calibration.samples, calibration.seq_len, speed)
    gpu = "" if peak.device_bytes is None else f", {format_size(peak.device_bytes)} on {device}"
    click.echo(f"expected: about {duration(seconds)} and {format_size(peak.host_bytes)} of memory on the host{gpu}",
               err=True)
