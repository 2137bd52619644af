"""`edgec run`: generate text from an `.edgec` file with the runtime, streaming it to stdout."""

from __future__ import annotations

import click

from edgec.commands.options import FiniteFloatRange
from edgec.commands.runtime_options import runtime_options


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--prompt", "-p", required=True, help="The text to continue.")
@click.option("--max-new-tokens", "-n", type=click.IntRange(min=1), default=128, show_default=True,
              help="Tokens to generate at most.")
@click.option("--temperature", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Sampling temperature; 0 is greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="Keep the k likeliest tokens (0: all).")
@click.option("--top-p", type=FiniteFloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Keep the smallest set of tokens whose probability reaches p.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed for sampling (0 or more).")
@click.option("--stop", multiple=True, help="Stop before this text (repeatable).")
@runtime_options
def run_command(file, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, backend, accuracy, threads,
                context) -> None:
    """Continue PROMPT with the model in FILE, printing the text as it is generated.

    The runtime reads the tokenizer from the file; nothing but the file is needed.
    """
    from edgec.core.errors import EdgecError
    from edgec.runtime import load

    if "" in stop:
        raise EdgecError("--stop: the empty string would stop before the first token")
    model = load(file, backend=backend, context=context, accuracy=accuracy, threads=threads)
    prompt_tokens = len(model.tokenizer.encode(prompt))
    room = model.context - prompt_tokens
    if 0 < room < max_new_tokens:
        click.echo(f"edgec: note: the context holds {model.context} tokens and the prompt takes {prompt_tokens}: "
                   f"at most {room} of the {max_new_tokens} tokens asked for (raise --context)", err=True)
    click.echo(prompt, nl=False)
    for piece in model.generate(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop):
        click.echo(piece, nl=False)
    click.echo()
