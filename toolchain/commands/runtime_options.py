"""Options of the commands that run a model with `edgec.runtime` (`edgec run`, `edgec bench`)."""

from __future__ import annotations

import click

from edgec.runtime.backends import ACCURACIES, backend_names


def runtime_options(command):
    """Add --backend, --accuracy, --threads and --context to a command."""
    command = click.option("--context", type=click.IntRange(min=2), default=None,
                           help="Tokens of context to allocate the KV cache for (default: 4096, or the model's maximum).")(command)
    command = click.option("--threads", type=click.IntRange(1, 256), default=None,
                           help="Threads of the cpu kernels (default: every CPU this process may use).")(command)
    command = click.option("--accuracy", type=click.Choice(ACCURACIES), default="exact", show_default=True,
                           help="exact: every layer computed from its exact weights; int8: int4/int8 layers "
                                "quantize activations to int8 for integer dot products (faster, as llama.cpp and "
                                "ONNX Runtime's accuracy level 4 do; cpu backend).")(command)
    return click.option("--backend", type=click.Choice(backend_names()), default="auto", show_default=True,
                        help="How the runtime computes: auto picks the fastest present.")(command)
