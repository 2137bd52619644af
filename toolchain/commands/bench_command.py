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
@runtime_options
@json_option
def bench_command(file, prompt_len, gen, backend, accuracy, context, as_json) -> None:
    """Measure FILE on this machine: open time, time to first token, prefill and decode tokens/s, peak memory.

    When the file carries a plan, its predictions are printed beside the measurements
    with the ratio (a plan made for another device predicts that device, not this one).
    """
    from edgec.bench import run_bench
    from edgec.data import evaluation_text
    from edgec.planner.sizes import format_size
    from edgec.runtime.container import open_container
    from edgec.runtime.tokenizer import Tokenizer

    with open_container(file, verify=False) as f:
        tokenizer = Tokenizer(f.metadata["tokenizer.json"], f.metadata["tokenizer.config"])
    prompt = tokenizer.encode(evaluation_text()[:20 * prompt_len])[:prompt_len]
    r = run_bench(file, prompt, gen, backend, context, accuracy)
    if as_json:
        click.echo(json.dumps(r.to_json(), indent=2))
        return
    plan = r.plan or {}

    def beside(measured: float, key: str) -> str:
        if key not in plan:
            return ""
        return f"   plan ({plan['device']}): {plan[key]:,.1f}, measured/plan x{measured / plan[key]:.2f}"

    click.echo(f"{file} on the {r.backend} backend ({r.accuracy}): {r.prompt_tokens}-token prompt, {r.generated_tokens} greedy tokens")
    click.echo(f"open + prepare      {1e3 * r.open_s:10.1f} ms")
    click.echo(f"first token         {1e3 * r.first_token_s:10.1f} ms (from opening the file)")
    click.echo(f"prefill             {r.prefill_tokens_per_s:10.1f} tokens/s{beside(r.prefill_tokens_per_s, 'prefill_tokens_per_s')}")
    click.echo(f"decode              {r.decode_tokens_per_s:10.1f} tokens/s{beside(r.decode_tokens_per_s, 'decode_tokens_per_s')}")
    click.echo(f"peak RSS            {format_size(r.peak_rss):>10}: before opening {format_size(r.baseline_rss)}, "
               f"weights mapped {format_size(r.weights_file_bytes)}, weights prepared {format_size(r.weights_prepared_bytes)}, "
               f"KV cache {format_size(r.kv_cache_bytes)}, other {format_size(r.other_bytes)}")
    if "weights_bytes" in plan:
        click.echo(f"plan's weight bytes {format_size(plan['weights_bytes']):>10}")
