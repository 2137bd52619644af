"""`edgec run`: generate text from an `.edgec` file with the runtime, streaming it to stdout."""

from __future__ import annotations

import click

from edgec.commands.runtime_options import runtime_options


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--prompt", "-p", required=True, help="The text to continue.")
@click.option("--max-new-tokens", "-n", type=click.IntRange(min=1), default=128, show_default=True,
              help="Tokens to generate at most.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Sampling temperature; 0 is greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="Keep the k likeliest tokens (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Keep the smallest set of tokens whose probability reaches p.")
@click.option("--seed", type=int, default=None, help="Random seed for sampling.")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@runtime_options
def run_command(file, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, backend, accuracy, threads,
                context) -> None:
    """Continue PROMPT with the model in FILE, printing the text as it is generated.

    The runtime reads the tokenizer from the file; nothing but the file is needed.
    """
    from edgec.runtime import load

    model = load(file, backend=backend, context=context, accuracy=accuracy, threads=threads)
    click.echo(prompt, nl=False)
    for piece in model.generate(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop):
        click.echo(piece, nl=False)
    click.echo()
