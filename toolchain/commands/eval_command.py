"""`edgec eval`: perplexity, KL and top-1 agreement (or embedding cosine) of a compressed model."""

from __future__ import annotations

import json

import click

from edgec.commands.options import compute_device_option, format_option, json_option, model_option


@click.command("eval")
@model_option
@format_option
@click.option("--include-head", is_flag=True, help="Also quantize the output head (and the embedding tied to it).")
@click.option("--text", "text_file", type=click.Path(dir_okay=False), default=None,
              help="Evaluate on this UTF-8 text file instead of the shipped Pride and Prejudice.")
@click.option("--seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per window.")
@click.option("--max-tokens", type=click.IntRange(min=0), default=16384, show_default=True,
              help="Tokens of the text to evaluate; 0 = all of it.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Windows per forward pass.")
@click.option("--sentences", type=click.IntRange(min=1), default=512, show_default=True,
              help="Sentences to embed (encoder models).")
@compute_device_option
@json_option
def eval_command(model, fmt, include_head, text_file, seq_len, max_tokens, batch_size, sentences, compute_device,
                 as_json) -> None:
    """Compress a model by round-to-nearest to FORMAT and compare it with the original.

    Prints perplexity of both on the evaluation text, the mean KL divergence of the
    compressed model's next-token distribution from the original's, top-1 agreement,
    and weight bytes before and after. For an encoder it prints the cosine similarity
    of sentence embeddings instead. Without --format only the original is evaluated.
    A causal LM runs block by block on --compute-device, each block in float32, the original
    and the compressed block in turn, so the model is held once; an encoder runs whole.
    """
    from edgec.calibration.placement import compute_device as resolve_device
    from edgec.core.formats import parse_format
    from edgec.data import read_user_text
    from edgec.evaluation.render import render
    from edgec.evaluation.run import EvalSettings, evaluate
    from edgec.models.loading import load_model

    if fmt is not None:
        parse_format(fmt)  # refuse a bad string before the slow model load
    text = read_user_text(text_file) if text_file else None
    device = resolve_device(compute_device)
    loaded = load_model(model, keep_16bit=True)
    settings = EvalSettings(
        format=fmt, include_head=include_head, text=text, seq_len=seq_len,
        max_tokens=max_tokens or None, batch_size=batch_size, sentences=sentences,
        progress=True, device=device,
        **({"text_name": text_file} if text_file else {}),
    )
    report = evaluate(loaded, settings)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else render(report))
