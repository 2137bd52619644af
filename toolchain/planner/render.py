"""A plan for people: the terminal table and the frontier plot."""

from __future__ import annotations

from pathlib import Path

from edgec.core.output_files import atomic_output
from edgec.planner.plan_schema import Plan
from edgec.planner.sizes import format_size


def plan_table(plan: Plan) -> str:
    """Per unit: format, method, bytes, predicted decode time, sensitivity; then totals against the limits."""
    loss = plan.settings.loss
    rows = [("unit", "format", "method", "bytes", "decode µs", loss, "out err")]
    for u in plan.units:
        rows.append((u.unit, u.format, u.method, format_size(u.bytes), f"{u.decode_ms * 1e3:.1f}",
                     f"{u.loss:.2e}", "-" if u.output_error is None else f"{u.output_error:.2e}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    t, applied = plan.totals, plan.constraints.applied

    def budget(name: str, shown: str) -> str:
        return f" (limit {shown})" if name in applied else ""

    counts: dict[str, int] = {}
    for u in plan.units:
        counts[u.format] = counts.get(u.format, 0) + 1
    memory_limit = [format_size(v + t.fixed_bytes) for k, v in applied.items() if k in ("--memory", "device memory")]
    lines += [
        "",
        f"units per format: {', '.join(f'{n} x {f}' for f, n in sorted(counts.items(), key=lambda x: -x[1]))}",
        f"weights: {format_size(t.weights_bytes)} ({t.avg_bits:.2f} bits per planned weight; "
        f"{format_size(t.fixed_bytes)} of it unplanned 16-bit parameters)"
        + (f" (limit {min(memory_limit)})" if "--memory" in applied else ""),
        f"deployed: {format_size(t.deployed_bytes)} with a {format_size(t.kv_cache_bytes)} KV cache at "
        f"{plan.settings.context} tokens; {plan.device.name} has {format_size(t.device_usable_bytes)} usable",
        f"decode: {t.decode_ms:.3f} ms/token"
        + budget("--latency-ms", f"{plan.constraints.latency_ms or 0:.3f} ms")
        + f"; prefill of {plan.settings.prompt_tokens} tokens: {t.prefill_ms:.2f} ms"
        + f"  [{plan.device.latency_model}]",
        f"predicted {loss}: {t.predicted_loss:.4f}"
        + next((f" (limit {v:.4g}, {k})" for k, v in applied.items() if k in ("--max-loss", "the default loss bound")), ""),
        f"objective: least {'predicted loss' if plan.constraints.objective == 'loss' else 'decode latency'}",
    ]
    if t.compress_peak_bytes is not None:
        gpu = ("" if t.compress_device_peak_bytes is None
               else f" and {format_size(t.compress_device_peak_bytes)} on the GPU")
        lines.append(f"`edgec compress --plan` will need about {format_size(t.compress_peak_bytes)} of memory on this "
                     f"machine{gpu}")
    return "\n".join(lines)


def plot_frontier(plan: Plan, path: Path) -> None:
    """Predicted loss against bytes and against decode latency: the frontier, the uniform formats, the plan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = plan.settings.loss
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, scale, label in ((axes[0], "bytes", 1e-6, "weights (MB)"), (axes[1], "decode_ms", 1.0, "decode (ms/token)")):
        front = sorted(plan.frontier.bytes if key == "bytes" else plan.frontier.latency, key=lambda p: getattr(p, key))
        ax.plot([getattr(p, key) * scale for p in front], [max(p.loss, 1e-6) for p in front], "-o", ms=3, color="C0",
                label="mixed-format frontier")
        for i, (name, p) in enumerate(sorted(plan.frontier.uniform.items())):
            ax.scatter(getattr(p, key) * scale, max(p.loss, 1e-6), marker="s", s=36, color=f"C{(i % 8) + 1}",
                       label=f"uniform {name}", zorder=3)
        t = plan.totals
        ax.scatter((t.weights_bytes if key == "bytes" else t.decode_ms) * scale, max(t.predicted_loss, 1e-6),
                   marker="*", s=220, color="crimson", label="this plan", zorder=4)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"predicted {loss} (sum over units; 0 drawn at 1e-6)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{plan.model.name} on {plan.device.name}: predicted loss vs size and speed")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
