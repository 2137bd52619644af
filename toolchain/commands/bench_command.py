"""`edgec bench`: measure a model on this machine with the runtime, beside what its plan predicted."""

from __future__ import annotations

import json

import click

from edgec.commands.options import json_option
from edgec.commands.runtime_options import runtime_options


@click.command("bench")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--prompt-len", type=click.IntRange(min=1), default=128, show_default=True,
              help="Prompt tokens (from Pride and Prejudice) to prefill.")
@click.option("--gen", type=click.IntRange(min=1), default=128, show_default=True, help="Tokens to decode greedily.")
@click.option("--append-profile", "profile_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Record the measurement beside the file's plan in this device profile (YAML), whose "
                   "decode and prefill predictions the planner then calibrates by it. The plan must be for that device.")
@runtime_options
@json_option
def bench_command(file, prompt_len, gen, profile_path, backend, accuracy, threads, context, as_json) -> None:
    """Measure FILE on this machine: open time, cold time to first token, warm prefill and decode tokens/s, peak memory.

    The first token is cold (opening, preparing, and a backend's one-time work such as Triton's
    compilation); prefill and decode are timed again after a warm-up (a prefill and a few decode
    steps), and those warm figures are what --append-profile records.

    When the file carries a plan, its predictions are printed beside the measurements
    with the ratio (a plan made for another device predicts that device, not this one).
    With --append-profile the measurement is added to the profile's `runtime` runs, and
    later plans for that profile scale their latency predictions by the median
    measured/predicted ratio (see edgec.planner.latency_scaling).
    """
    from edgec.bench import run_bench
    from edgec.data import evaluation_text
    from edgec.planner.sizes import format_size
    from edgec.runtime.container import open_container
    from edgec.runtime.tokenizer import Tokenizer

    with open_container(file, verify=False) as f:
        tokenizer = Tokenizer(f.metadata.read("tokenizer.json"), f.metadata["tokenizer.config"])
        stored_plan = f.metadata["edgec.plan"]
    if profile_path:
        from edgec.planner.latency_scaling import check_plan_device
        from edgec.planner.profiles import load_profile

        check_plan_device(stored_plan, load_profile(profile_path), file)  # before measuring
    prompt = tokenizer.encode(evaluation_text()[:20 * prompt_len])[:prompt_len]
    r = run_bench(file, prompt, gen, backend, context, accuracy, threads)
    appended = _append_profile(profile_path, file, stored_plan, r) if profile_path else None
    if as_json:
        click.echo(json.dumps({**r.to_json(), "appended_to": profile_path}, indent=2))
        return
    plan = r.plan or {}

    def beside(measured: float, key: str) -> str:
        if key not in plan:
            return ""
        return f"   plan ({plan['device']}): {plan[key]:,.1f}, measured/plan x{measured / plan[key]:.2f}"

    click.echo(f"{file} on the {r.backend} backend ({r.accuracy}): {r.prompt_tokens}-token prompt, {r.generated_tokens} greedy tokens")
    click.echo(f"open + prepare      {1e3 * r.open_s:10.1f} ms")
    click.echo(f"first token, cold   {1e3 * r.first_token_s:10.1f} ms (from opening the file; its prefill "
               f"{r.cold_prefill_tokens_per_s:,.1f} tokens/s)")
    click.echo(f"warm, after a prefill and {r.warmup_decode_steps} decode steps of warm-up:")
    click.echo(f"prefill             {r.prefill_tokens_per_s:10.1f} tokens/s{beside(r.prefill_tokens_per_s, 'prefill_tokens_per_s')}")
    click.echo(f"decode              {r.decode_tokens_per_s:10.1f} tokens/s{beside(r.decode_tokens_per_s, 'decode_tokens_per_s')}")
    click.echo(f"peak RSS            {format_size(r.peak_rss):>10}: before opening {format_size(r.baseline_rss)}, "
               f"weights mapped {format_size(r.weights_file_bytes)}, weights prepared {format_size(r.weights_prepared_bytes)}, "
               f"KV cache {format_size(r.kv_cache_bytes)}, other {format_size(r.other_bytes)}")
    if "weights_bytes" in plan:
        click.echo(f"plan's weight bytes {format_size(plan['weights_bytes']):>10}")
    if appended is not None:
        from edgec.planner.latency_scaling import latency_scaling

        scale = latency_scaling(appended)
        click.echo(f"appended to {profile_path}: {scale.runs} runtime run(s); plans for {appended.name} now scale "
                   f"predicted decode by x{scale.decode:.2f} and prefill by x{scale.prefill:.2f}")


def _append_profile(profile_path: str, file: str, plan: dict | None, r):
    """Add the measurement to the profile at profile_path (rewritten atomically); returns the new profile."""
    from pathlib import Path

    from edgec.planner.latency_scaling import runtime_run
    from edgec.planner.profiles import load_profile, save_profile

    profile = load_profile(profile_path)
    run = runtime_run(plan, profile, str(Path(file).name), r.backend, r.accuracy, r.threads, r.prompt_tokens,
                      r.decode_tokens_per_s, r.prefill_tokens_per_s)
    updated = profile.model_copy(update={"runtime": [*profile.runtime, run]})
    save_profile(updated, Path(profile_path))
    return updated

