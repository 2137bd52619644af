"""`edgec plan`: choose each layer's format for a device, exactly, and show the frontier."""

from __future__ import annotations

from pathlib import Path

import click

from edgec.commands.options import FiniteFloatRange, compute_device_option, json_option, model_option


@click.command("plan")
@click.option("--device", "-d", required=True, metavar="DEVICE",
              help="A shipped device profile (see `edgec devices`) or the path of a YAML profile.")
@model_option
@click.option("--memory", default=None, metavar="SIZE", help="Limit on the deployed weights, e.g. 80MB or 1.5GiB.")
@click.option("--latency-ms", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Limit on the predicted decode time per token, in ms.")
@click.option("--avg-bits", type=FiniteFloatRange(min=0, max=16, min_open=True), default=None,
              help="Limit on stored bits per weight over the planned linears (at most 16, the widest format).")
@click.option("--max-loss", "--max-kl", "max_loss", type=FiniteFloatRange(min=0), default=None,
              help="Limit on the summed predicted loss (KL in nats/token for an LM, cosine distance for an encoder).")
@click.option("--context", type=click.IntRange(min=1), default=2048, show_default=True,
              help="Tokens the KV cache must hold (counts against the device's memory).")
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=512, show_default=True,
              help="Prompt length for the predicted prefill time.")
@click.option("--no-fuse", is_flag=True, help="Let q/k/v and gate/up take different formats (runtimes then cannot fuse them).")
@click.option("--keep-head", is_flag=True, help="Keep the output head (and a tied embedding) in 16 bit.")
@click.option("--methods", type=click.Choice(["auto", "rtn"]), default="auto", show_default=True,
              help="auto: GPTQ for 2-4 bit, SparseGPT for 2:4, RTN for 8 bit; rtn: RTN everywhere (fast, worse).")
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Calibration windows of 512 tokens for the Hessians.")
@click.option("--loss-samples", type=click.IntRange(min=1), default=2, show_default=True,
              help="Windows of 128 tokens on which each candidate's model-output loss is measured.")
@click.option("--no-cache", is_flag=True, help="Measure sensitivity again instead of reading the cache.")
@compute_device_option
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes measuring sensitivity. 1: this process, every core through torch's threads (or the "
                   "GPU). N > 1: N forked CPU workers of one thread each; memory grows with N.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="plan.json", show_default=True,
              help="Where to write the plan (replaced if it exists).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Where to draw the frontier [default: the plan's path with .png].")
@json_option
def plan_command(device, model, memory, latency_ms, avg_bits, max_loss, context, prompt_tokens, no_fuse, keep_head,
                 methods, samples, loss_samples, no_cache, compute_device, workers, output, plot, as_json) -> None:
    """Choose every layer's format and method for DEVICE and write the plan and its frontier plot.

    The plan minimises the summed measured sensitivity under the limits given. With no
    --memory, --latency-ms or --avg-bits it is the fastest plan that fits the device's
    usable memory (weights and the KV cache at --context tokens) and keeps the predicted
    loss under --max-loss (default 0.05 nats/token for an LM). Apply it with
    `edgec compress --plan PLAN`.
    """
    import json

    from edgec.calibration.placement import compute_device as resolve_device
    from edgec.core.errors import EdgecError
    from edgec.core.memory import current_rss_bytes
    from edgec.core.output_files import atomic_output
    from edgec.core.progress import duration
    from edgec.models.loading import load_model
    from edgec.planner.compress_memory import compress_peak, plan_layers
    from edgec.planner.plan import Constraints, PlanSettings, make_plan, prepare
    from edgec.planner.plan_schema import RunSection, plan_json
    from edgec.planner.profiles import load_profile
    from edgec.planner.render import plan_table, plot_frontier
    from edgec.planner.sensitivity import SensitivityCache, SensitivitySettings
    from edgec.planner.sizes import parse_size
    from edgec.planner.task_executors import task_executor

    out = Path(output)
    png = Path(plot) if plot else out.with_suffix(".png")
    for path in (out, png):
        if not path.parent.is_dir():
            raise EdgecError(f"{path}: the folder {path.parent} does not exist")
    profile = load_profile(device)
    constraints = Constraints(parse_size(memory, "--memory") if memory is not None else None, latency_ms, avg_bits, max_loss)
    settings = PlanSettings(fuse=not no_fuse, include_head=not keep_head, methods=methods, context=context,
                            prompt_tokens=prompt_tokens,
                            sensitivity=SensitivitySettings(samples=samples, loss_samples=loss_samples))
    device = resolve_device(compute_device)
    executor = task_executor(workers, device)
    loaded = load_model(model, keep_16bit=True)
    loaded_rss = current_rss_bytes()
    inputs = prepare(loaded, profile, settings, None if no_cache else SensitivityCache(), progress=True, device=device,
                     executor=executor)
    plan = make_plan(loaded, profile, inputs, constraints, settings)
    peak = compress_peak(loaded, plan_layers(plan), loaded_rss, device)
    table = inputs.table
    run = RunSection(sensitivity_seconds=round(table.seconds, 1), candidates_measured=table.measured,
                     candidates_cached=table.cached, compute_device=str(device))
    peaks = {"compress_peak_bytes": peak.host_bytes}
    if peak.device_bytes is not None:
        peaks["compress_device_peak_bytes"] = peak.device_bytes
    plan = plan.model_copy(update={"run": run, "totals": plan.totals.model_copy(update=peaks)})
    text = json.dumps(plan_json(plan), indent=1)
    with atomic_output(out) as tmp:
        tmp.write_text(text + "\n")
    plot_frontier(plan, png)
    if as_json:
        click.echo(text)
        return
    click.echo(plan_table(plan))
    error = "" if table.prediction_error is None else f", the rest predicted (median error {100 * table.prediction_error:.0f} %)"
    how = (f"sensitivity: {duration(table.seconds)} on {device}; {table.measured} candidates (format and method) measured "
           f"now, {table.cached} read from the cache; model-output loss measured for {table.measured_losses} of "
           f"{len(table.errors)} (unit, candidate) pairs on {settings.sensitivity.loss_samples} x "
           f"{settings.sensitivity.loss_seq_len} calibration tokens{error}")
    click.echo(how)
    for note in plan.solver_notes:
        click.echo(f"note: {note}")
    click.echo(f"wrote {out} and {png}")
