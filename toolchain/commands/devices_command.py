"""`edgec devices`: list the shipped device profiles, or show (and so validate) one."""

from __future__ import annotations

import json

import click

from edgec.commands.options import json_option

_INTEGER_COMPUTE = ("int8", "int4")


@click.command("devices")
@click.argument("name", required=False, metavar="[NAME]")
@json_option
def devices_command(name, as_json) -> None:
    """List the shipped device profiles, or show one in full.

    Without NAME, prints one line per shipped profile: kind, memory, memory a model may
    use, bandwidth and the formats it has a kernel path for. With NAME (a shipped name
    such as rtx4090, or the path of a YAML profile) prints the whole profile: figures
    with units, how each format runs (natively, or dequantized to a float type) and the
    source of every figure. Showing a YAML file validates it: a bad field is refused
    with its name.
    """
    from edgec.planner.profiles import load_profile, shipped_profiles

    if name is None:
        profiles = [load_profile(n) for n in shipped_profiles()]
        if as_json:
            click.echo(json.dumps({"devices": [_summary(p) for p in profiles]}, indent=2))
        else:
            click.echo(_render_table(profiles))
        return
    profile = load_profile(name)
    if as_json:
        data = profile.model_dump(mode="json", exclude_none=True)
        data["usable_bytes"] = profile.usable_bytes
        data["digest"] = profile.digest()
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(_render_profile(profile))


def _summary(profile) -> dict:
    return {
        "name": profile.name, "kind": profile.kind, "description": profile.description,
        "memory_bytes": profile.memory_bytes, "usable_bytes": profile.usable_bytes,
        "bandwidth_gbs": profile.bandwidth_gbs, "formats": list(profile.formats),
        "measured": profile.measured is not None,
    }


def _memory(n: int) -> str:
    """'24 GiB', '21.6 GiB': binary units, as DRAM is sold ("24 GB" cards hold 24 GiB)."""
    gib = n / 2**30
    return f"{gib:.0f} GiB" if n % 2**30 == 0 else f"{gib:.1f} GiB"


def _throughput(compute: str, tops: float) -> str:
    unit = "TOPS" if compute in _INTEGER_COMPUTE else "TFLOPS"
    return f"{tops:g} {unit}"


def _render_table(profiles) -> str:
    header = f"{'name':24}{'kind':6}{'memory':>9}{'usable':>10}{'GB/s':>8}  formats"
    lines = [header, "-" * len(header)]
    for p in profiles:
        lines.append(f"{p.name:24}{p.kind:6}{_memory(p.memory_bytes):>9}{_memory(p.usable_bytes):>10}"
                     f"{p.bandwidth_gbs:>8g}  {', '.join(p.formats)}")
    lines.append("")
    lines.append("`edgec devices NAME` shows a profile in full, with the source of every figure.")
    return "\n".join(lines)


def _render_profile(profile) -> str:
    import textwrap

    from edgec.planner.sizes import format_size

    p = profile
    lines = [f"{p.name} ({p.kind}): {p.description}", ""]
    lines.append(f"  memory        {_memory(p.memory_bytes)} ({format_size(p.memory_bytes)}); a model may use "
                 f"{p.usable_memory_fraction:.0%} = {_memory(p.usable_bytes)} ({format_size(p.usable_bytes)})")
    lines.append(f"  bandwidth     {p.bandwidth_gbs:g} GB/s")
    peaks = ", ".join(f"{c} {_throughput(c, v)}" for c, v in p.peak_tops.items())
    lines.append(f"  peak (dense)  {peaks}")
    lines.append(f"  dispatch      {p.dispatch_us:g} us per kernel call")
    sparse = f"{p.sparse24_speedup:g}x math on 2:4 sparse weights" if p.sparse24_speedup > 1 else "none (no sparse hardware)"
    lines.append(f"  2:4 speed-up  {sparse}")
    lines.append("")
    lines.append("  formats")
    for text, path in p.formats.items():
        how = f"native, computes in {path.compute}" if path.native else f"dequantized, computes in {path.compute}"
        lines.append(f"    {text:16}{how} ({_throughput(path.compute, p.peak_tops[path.compute])})")
    if p.measured is not None:
        m = p.measured
        lines.append("")
        lines.append(f"  measured      {len(m.timings)} kernel timings on {m.date} ({m.kernels}, {m.threads} threads): "
                     f"latency comes from the fitted predictor, not the roofline")
    lines.append("")
    lines.append("  sources")
    for field, text in p.sources.items():
        lines.append(f"    {field}:")
        lines.extend(textwrap.wrap(" ".join(text.split()), width=108, initial_indent=" " * 6,
                                   subsequent_indent=" " * 6, break_on_hyphens=False, break_long_words=False))
    lines.append("")
    lines.append(f"  profile sha256 {p.digest()}")
    return "\n".join(lines)
