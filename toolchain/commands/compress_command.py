"""`edgec compress`: compress a model with a per-layer format and method and write it out."""

from __future__ import annotations

from pathlib import Path

import click

from edgec.commands.compression_options import CompressionOptions, compression_options
from edgec.commands.options import compute_device_option, json_option, model_option, output_option


@click.command("compress")
@model_option
@compression_options
@compute_device_option
@output_option
@json_option
def compress_command(model, compression: CompressionOptions, compute_device, output, as_json) -> None:
    """Compress every quantizable linear to FORMAT by METHOD (or as a PLAN says) and write a model folder to OUTPUT.

    The folder loads like any Hugging Face model (`edgec eval --model OUTPUT`) and also holds
    every layer's packed buffers and a manifest of formats and methods for the exporters.
    Calibrated methods (gptq, awq, smoothquant, wanda, sparsegpt) read the shipped Sense and
    Sensibility. smoothquant makes a W8A8 model (int8 or fp8): its activation scales are
    recorded and applied whenever the folder is loaded.
    """
    import json

    from edgec.calibration.placement import compute_device as resolve_device
    from edgec.commands.compression_options import check_compression, run_compression
    from edgec.compressed_io import SPILL, check_output_path, write_compressed
    from edgec.core.errors import EdgecError
    from edgec.core.formats import parse_format
    from edgec.core.output_files import atomic_output
    from edgec.models.loading import load_model

    if not compression.requested:
        raise EdgecError("give either --format (one format for every layer) or --plan (a plan from `edgec plan`)")
    out = Path(output)
    check_output_path(out)
    plan = check_compression(compression)  # before the model is loaded
    device = resolve_device(compute_device)
    loaded = load_model(model, keep_16bit=True)
    with atomic_output(out, folder=True) as tmp:
        run = run_compression(loaded, compression, plan, device, spill=tmp / SPILL)
        result = run.result
        write_compressed(loaded, result, tmp, run.calibration, run.plan)
    fmt = str(parse_format(compression.fmt)) if compression.fmt else None
    method, plan_path = compression.method, compression.plan_path
    what = f"as {plan_path} plans" if plan_path is not None else f"in {fmt} by {method}"
    summary = {"output": str(out), "layers": len(result.layers), "format": fmt,
               "method": method if fmt else None, "plan": plan_path,
               "calibration_tokens": result.calibration_tokens, "calibration_text_tokens": result.calibration_text_tokens}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        calib = (f", calibrated on {result.calibration_tokens:,} of the {result.calibration_text_tokens:,} tokens "
                 f"of Sense and Sensibility" if result.calibration_tokens else "")
        click.echo(f"wrote {out}: {len(result.layers)} linears {what}{calib}")
