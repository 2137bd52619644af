"""Options of the commands that run a model with `edgec.runtime` (`edgec run`, `edgec bench`)."""

from __future__ import annotations

import click

from edgec.runtime.backends import backend_names


def runtime_options(command):
    """Add --backend and --context to a command."""
    command = click.option("--context", type=click.IntRange(min=2), default=None,
                           help="Tokens of context to allocate the KV cache for (default: 4096, or the model's maximum).")(command)
    return click.option("--backend", type=click.Choice(backend_names()), default="auto", show_default=True,
                        help="How the runtime computes: auto picks the fastest present.")(command)
