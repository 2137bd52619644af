"""`edgec compress`: compress a model with a per-layer format and method and write it out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgec.commands.options import format_option, json_option, model_option, output_option


@click.command("compress")
@model_option
@format_option
@click.option("--plan", "plan_path", default=None, type=click.Path(dir_okay=False), metavar="PLAN",
              help="A plan from `edgec plan`: each layer's format and method (instead of --format/--method).")
@click.option("--method", default="rtn", show_default=True,
              type=click.Choice(["rtn", "gptq", "awq", "smoothquant", "magnitude", "wanda", "sparsegpt"]),
              help="Compression method for every layer.")
@click.option("--sparsity", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Unstructured sparsity for magnitude/wanda/sparsegpt with a 16-bit format (e.g. 0.5).")
@click.option("--include-head", is_flag=True,
              help="Also compress the output head (and the embedding tied to it); by RTN when --method is calibrated.")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True, help="Calibration windows.")
@click.option("--seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per calibration window.")
@click.option("--act-order/--no-act-order", default=True, show_default=True,
              help="GPTQ: visit columns by decreasing Hessian diagonal (with static groups).")
@click.option("--damp", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True,
              help="GPTQ/SparseGPT: Hessian damping as a fraction of its mean diagonal.")
@click.option("--no-clip", is_flag=True,
              help="AWQ and GPTQ: skip the clip search and fit each group's min-max range (GPTQ as originally published).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="SmoothQuant: migration strength from activations to weights.")
@output_option
@json_option
def compress_command(model, fmt, plan_path, method, sparsity, include_head, samples, seq_len, act_order, damp, no_clip, alpha, output,
                     as_json) -> None:
    """Compress every quantizable linear to FORMAT by METHOD (or as a PLAN says) and write a model folder to OUTPUT.

    The folder loads like any Hugging Face model (`edgec eval --model OUTPUT`) and also holds
    every layer's packed buffers and a manifest of formats and methods for the exporters.
    Calibrated methods (gptq, awq, smoothquant, wanda, sparsegpt) read the shipped Sense and
    Sensibility. smoothquant makes a W8A8 model (int8 or fp8): its activation scales are
    recorded and applied whenever the folder is loaded.
    """
    import json

    from edgec.assignment import uniform_assignment
    from edgec.compress import CalibrationSettings, compress, plan_passes
    from edgec.compressed_io import check_output_path, save_compressed
    from edgec.errors import EdgecError
    from edgec.models.loading import load_model
    from edgec.planner.plan_file import plan_request, read_plan
    from edgec.passes import (
        PASSES, AWQ, GPTQ, AWQOptions, GPTQOptions, LayerConfig, SmoothQuant, SmoothQuantOptions, SparseGPT, SparseGPTOptions,
    )
    from edgec.runtime.formats import parse_format

    if (fmt is None) == (plan_path is None):
        raise EdgecError("give either --format (one format for every layer) or --plan (a plan from `edgec plan`)")
    fmt = parse_format(fmt) if fmt is not None else None
    plan = read_plan(Path(plan_path)) if plan_path is not None else None
    out = Path(output)
    check_output_path(out)
    loaded = load_model(model)
    if plan is not None:
        request = plan_request(plan, loaded, Path(plan_path))
    else:
        formats = uniform_assignment(loaded.model, loaded.adapter, fmt, include_head)
        head = loaded.adapter.head(loaded.model)
        request = {name: LayerConfig(f, "rtn" if head is not None and name == head.name and PASSES[method].calibrated
                                     else method, sparsity or 0.0) for name, f in formats.items()}
    passes = {"gptq": GPTQ(GPTQOptions(damp=damp, act_order=act_order, clip=not no_clip)), "sparsegpt": SparseGPT(SparseGPTOptions(damp=damp)),
              "awq": AWQ(AWQOptions(clip=not no_clip)), "smoothquant": SmoothQuant(SmoothQuantOptions(alpha=alpha))}
    plan_passes(loaded, request, passes)  # refuse bad combinations before calibration starts
    calibration = CalibrationSettings(samples=samples, seq_len=seq_len)
    progress = sys.stderr.isatty()
    result = compress(loaded, request, calibration, passes, progress=progress)
    save_compressed(loaded, result, out, calibration)
    what = f"as {plan_path} plans" if plan is not None else f"in {fmt} by {method}"
    summary = {"output": str(out), "layers": len(result.layers), "format": str(fmt) if fmt else None,
               "method": method if fmt else None, "plan": plan_path,
               "calibration_tokens": result.calibration_tokens, "calibration_text_tokens": result.calibration_text_tokens}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        calib = (f", calibrated on {result.calibration_tokens:,} of the {result.calibration_text_tokens:,} tokens "
                 f"of Sense and Sensibility" if result.calibration_tokens else "")
        click.echo(f"wrote {out}: {len(result.layers)} linears {what}{calib}")
