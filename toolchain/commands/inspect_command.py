"""`edgec inspect`: what an exported file holds (an `.edgec` file or one of edgec's ONNX exports)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.commands.options import json_option

# Metadata shown in the text summary; --json prints every key.
_SUMMARY_KEYS = ("general.name", "general.architecture", "general.task", "edgec.device", "provenance.source_name",
                 "provenance.source_sha256", "provenance.edgec_version", "provenance.created")


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help=".edgec: check every tensor's checksum (reads the whole file).")
@json_option
def inspect_command(file, verify, as_json) -> None:
    """Print FILE's metadata and, per tensor, its format, shape, bytes and checksum state.

    FILE is an `.edgec` file or an ONNX model written by `edgec export`. A checksum
    mismatch is listed and then reported as an error (exit status 2).
    """
    from edgec.core.container_layout import MAGIC
    from edgec.core.errors import EdgecError

    path = Path(file)
    with _open_bytes(path) as handle:
        is_edgec = handle.read(len(MAGIC)) == MAGIC
    if not is_edgec and path.suffix.lower() != ".onnx":
        raise EdgecError(f"{path}: not an .edgec file (it does not start with the magic bytes {MAGIC!r}) "
                         f"and not named .onnx")
    report = _inspect_edgec(path, verify) if is_edgec else _inspect_onnx(path)
    click.echo(json.dumps(report["json"], indent=2) if as_json else report["text"])
    if report.get("error"):
        raise EdgecError(report["error"])


def _open_bytes(path: Path):
    from edgec.core.errors import EdgecError

    try:
        return open(path, "rb")
    except OSError as exc:
        raise EdgecError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _inspect_edgec(path: Path, verify: bool) -> dict:
    from edgec.core.errors import ContainerError
    from edgec.planner.sizes import format_size
    from edgec.runtime.container import open_container
    from edgec.runtime.model import check_model

    with open_container(path, verify=verify) as f:  # --no-verify: the model check reads no checksum either
        error = None
        if verify:
            for name in f.tensors:
                try:
                    f.verify(name)
                except ContainerError as exc:
                    error = error or str(exc)
        if error is None:
            try:  # what load checks before preparing anything, so that inspect and run refuse the same files
                check_model(f)
            except ContainerError as exc:
                error = str(exc)
        rows = [{"name": e.name, "format": str(e.format), "shape": list(e.shape), "bytes": e.nbytes,
                 "checksum": f"{e.crc32:08x}", "state": f.checksum_state(e.name)} for e in f.tensors.values()]
        metadata = {key: f.metadata[key] for key in f.metadata if key not in ("tokenizer.json",)}
        summary = {"file": str(path), "kind": "edgec", "version": f.version, "bytes": f.file_size,
                   "header_bytes": f.data_offset, "alignment": {"buffer": f.buffer_alignment, "data": f.data_alignment},
                   "metadata": metadata, "tensors": rows}
        lines = [f"{path}: .edgec version {f.version}, {format_size(f.file_size)}, {len(rows)} tensors "
                 f"({len(f.metadata['edgec.layers'])} compressed linears), header and padding "
                 f"{format_size(f.data_offset)}"]
        lines += [f"  {key}: {f.metadata[key]}" for key in _SUMMARY_KEYS if f.metadata.get(key)]
        formats: dict[str, int] = {}
        for row in rows:
            formats[row["format"]] = formats.get(row["format"], 0) + row["bytes"]
        lines.append("  bytes by format: " + ", ".join(f"{k} {format_size(v)}" for k, v in sorted(formats.items())))
        aliases = f.metadata["edgec.aliases"]
        if aliases:
            lines.append("  aliases: " + ", ".join(f"{a} -> {t}" for a, t in aliases.items()))
        width = max(len(r["name"]) for r in rows) if rows else 4
        lines.append(f"  {'tensor':<{width}}  {'format':<14} {'shape':<14} {'bytes':>10}  checksum")
        lines += [f"  {r['name']:<{width}}  {r['format']:<14} {'x'.join(map(str, r['shape'])):<14} "
                  f"{r['bytes']:>10,}  {r['checksum']} {r['state']}" for r in rows]
    return {"json": summary, "text": "\n".join(lines), "error": error}


def _inspect_onnx(path: Path) -> dict:
    from edgec.exporters.onnx_summary import read_onnx_summary
    from edgec.planner.sizes import format_size

    summary = read_onnx_summary(path)
    meta = summary["metadata"]
    lines = [f"{path}: ONNX exported by edgec {meta['edgec.core.version']}, {format_size(summary['file_bytes'])}, "
             f"{len(summary['layers'])} linears, weights {format_size(summary['weight_bytes'])}"]
    lines += [f"  {key}: {value}" for key, value in meta.items()
              if key not in ("edgec.layers", "edgec.validation", "edgec.calibration")]
    check = meta.get("edgec.validation")
    if check:
        kl = f", mean KL {check['mean_kl']:.2g}" if check.get("mean_kl") is not None else ""
        lines.append(f"  validated: max |difference| {check['max_abs_diff']:.3g}{kl}")
    width = max((len(row["layer"]) for row in summary["layers"] + [{"layer": r["name"]} for r in summary["other"]]), default=5)
    op_width = max((len(row["op"]) for row in summary["layers"]), default=2)
    lines.append(f"  {'layer / tensor':<{width}}  {'format':<14} {'op / shape':<{op_width}} {'bytes':>10}")
    lines += [f"  {row['layer']:<{width}}  {row['format']:<14} {row['op']:<{op_width}} {row['bytes']:>10,}"
              for row in summary["layers"]]
    lines += [f"  {row['name']:<{width}}  {row['dtype']:<14} {'x'.join(map(str, row['shape'])):<{op_width}} {row['bytes']:>10,}"
              for row in summary["other"]]
    return {"json": summary, "text": "\n".join(lines)}
