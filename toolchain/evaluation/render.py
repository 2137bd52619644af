"""Human-readable rendering of an `EvalReport`."""

from __future__ import annotations

from edgec.evaluation.run import EvalReport


def human_bytes(n: int) -> str:
    """1234567 -> '1.23 MB' (decimal units, as memory budgets are quoted)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def render(report: EvalReport) -> str:
    """The table `edgec eval` prints."""
    fmt = report.format
    lines = [f"model      {report.model}  (weights sha256 {report.weights_sha256[:12]})"]
    if report.lm is not None:
        lm = report.lm
        lines.append(f"text       {report.text}: {lm.tokens_in_text:,} tokens; evaluated {lm.predictions:,} predictions "
                     f"in {lm.windows} windows of {lm.seq_len}")
    if report.encoder is not None:
        lines.append(f"text       {report.text}: {report.encoder.sentences} sentences")
    if fmt:
        head = "head included" if report.head_quantized else "head and embeddings kept"
        lines.append(f"format     {fmt} by {report.method.upper()} on {report.quantized_layers} linears ({head}), "
                     f"{report.linear_bits_per_weight:.3f} bits per weight")
    lines.append("")
    col = fmt or ""
    lines.append(f"{'':24}{'original':>14}{col:>16}")
    if report.lm is not None:
        lm = report.lm
        row = f"{'perplexity':24}{lm.perplexity_original:>14.3f}"
        if lm.perplexity_compressed is not None:
            change = 100 * (lm.perplexity_compressed / lm.perplexity_original - 1)
            row += f"{lm.perplexity_compressed:>16.3f}  ({change:+.2f} %)"
        lines.append(row)
        if lm.kl_mean is not None:
            lines.append(f"{'KL (nats/token)':24}{'':>14}{lm.kl_mean:>16.5f}")
            lines.append(f"{'top-1 agreement':24}{'':>14}{100 * lm.top1_agreement:>15.2f}%")
    if report.encoder is not None and report.encoder.mean_cosine is not None:
        enc = report.encoder
        lines.append(f"{'cosine to original':24}{'':>14}{enc.mean_cosine:>16.5f}  (min {enc.min_cosine:.4f})")
    row = f"{'weights':24}{human_bytes(report.bytes_original):>14}"
    if report.bytes_compressed is not None:
        row += f"{human_bytes(report.bytes_compressed):>16}  (x{report.bytes_original / report.bytes_compressed:.2f} smaller)"
    lines.append(row)
    lines.append(f"\n{report.seconds:.1f} s")
    return "\n".join(lines)
