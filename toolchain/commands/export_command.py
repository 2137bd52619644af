"""`edgec export`: write a (compressed) model as an `.edgec` file, an ONNX model, or both."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgec.commands.compression_options import CompressionOptions, compression_options
from edgec.commands.options import compute_device_option, json_option, model_option

SUFFIXES = {"edgec": ".edgec", "onnx": ".onnx"}


def output_paths(output: str, targets: tuple[str, ...]) -> dict[str, Path]:
    """Target -> file: OUTPUT itself for one target; for both, OUTPUT's stem with each suffix."""
    out = Path(output)
    if len(targets) == 1:
        return {targets[0]: out}
    stem = out.with_suffix("") if out.suffix in SUFFIXES.values() else out
    return {target: stem.with_name(stem.name + SUFFIXES[target]) for target in targets}


@click.command("export")
@model_option
@click.option("--compressed", "compressed_dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="A folder written by `edgec compress` (instead of --model with --format or --plan).")
@compression_options
@compute_device_option
@click.option("--to", "targets", multiple=True, required=True, type=click.Choice(list(SUFFIXES)),
              help="What to write; repeat for both (--to edgec --to onnx).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="The file to write (must not exist). With two --to, FILE's stem gets .edgec and .onnx.")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="ONNX: run the export in ONNX Runtime and compare its logits with edgec's reference model.")
@json_option
def export_command(model, compressed_dir, compression: CompressionOptions, compute_device, targets, output, verify,
                   as_json) -> None:
    """Export a model for deployment: edgec's packed `.edgec` file and/or ONNX with ONNX Runtime's quantized ops.

    The model is either a folder `edgec compress` wrote (--compressed), or --model compressed
    on the way by --format/--method or --plan exactly as `edgec compress` would, or --model
    as it is (every weight in 16 bit). `.edgec` keeps every layer's stored buffers bit for
    bit; its layout is docs/FORMAT.md. The ONNX export is checked in ONNX Runtime unless
    --no-verify, and gets the tokenizer (tokenizer.json, tokenizer_config.json) and, for a
    causal LM, generation_config.json (BOS/EOS ids) beside it, as optimum folders have;
    two exports of one model may share a folder. Nothing is written unless the whole
    export succeeds.
    """
    from edgec.core.errors import EdgecError
    from edgec.export_sources import source_from_folder, source_from_result

    targets = tuple(dict.fromkeys(targets))
    paths = output_paths(output, targets)
    for path in paths.values():
        if path.exists():
            raise EdgecError(f"output {path} already exists; remove it or choose another path")
        if not path.parent.is_dir():
            raise EdgecError(f"output folder {path.parent} does not exist")
    if compressed_dir is not None:
        if model is not None or compression.requested:
            raise EdgecError("--compressed is already compressed: give it without --model, --format or --plan")
        source = source_from_folder(Path(compressed_dir))
        _check_beside_onnx(paths, source.loaded)
    else:
        from edgec.calibration.placement import compute_device as resolve_device
        from edgec.commands.compression_options import check_compression, run_compression
        from edgec.compressed_io import calibration_record
        from edgec.models.loading import load_model

        plan = check_compression(compression) if compression.requested else None  # before the model is loaded
        device = resolve_device(compute_device)
        loaded = load_model(model)
        _check_beside_onnx(paths, loaded)  # before compressing, and before any target is written
        if compression.requested:
            run = run_compression(loaded, compression, plan, device)
            source = source_from_result(loaded, run.result, run.plan, calibration_record(run.result, run.calibration))
        else:
            source = source_from_result(loaded, None)
    summary: dict = {"model": source.loaded.name, "compressed_layers": len(source.layers), "outputs": {}}
    lines = []
    for target, path in paths.items():
        summary["outputs"][target], text = _EXPORTERS[target](source, path, verify, True)
        lines.append(text)
    click.echo(json.dumps(summary, indent=2) if as_json else "\n".join(lines))


def _check_beside_onnx(paths: dict[str, Path], loaded) -> None:
    """Refuse now if the ONNX target's folder holds another model's tokenizer or generation files."""
    from edgec.exporters.tokenizer_files import check_beside, files_beside_model

    if "onnx" in paths:
        check_beside(paths["onnx"].parent, files_beside_model(loaded))


def _export_edgec(source, path: Path, verify: bool, progress: bool) -> tuple[dict, str]:
    from edgec.exporters.edgec_export import export_edgec
    from edgec.planner.sizes import format_size

    report = export_edgec(source, path, progress=progress)
    text = (f"wrote {path}: {format_size(report.file_bytes)}, {report.tensors} tensors "
            f"({len(source.layers)} compressed linears); header {format_size(report.header_bytes)}, "
            f"alignment padding {format_size(report.padding_bytes)}")
    return {"path": str(path), "bytes": report.file_bytes, "header_bytes": report.header_bytes,
            "padding_bytes": report.padding_bytes, "payload_bytes": report.payload_bytes, "tensors": report.tensors}, text


def _export_onnx(source, path: Path, verify: bool, progress: bool) -> tuple[dict, str]:
    from collections import Counter

    from edgec.exporters.onnx_export import export_onnx
    from edgec.planner.sizes import format_size

    report = export_onnx(source, path, verify=verify, progress=progress)
    ops = Counter(layer["op"] for layer in report.layers.values())
    text = (f"wrote {path}: {format_size(report.file_bytes)}, {len(report.layers)} linears as "
            + ", ".join(f"{count} {op}" for op, count in ops.most_common()) + f"; embedding by {report.embedding_op}"
            + f"\n  beside it: {', '.join(report.beside)}")
    check = report.validation
    if check is None:
        text += "\n  not validated (--no-verify)"
    else:
        kl = f", mean KL {check.mean_kl:.2g} (max {check.max_kl:.2g})" if check.mean_kl is not None else ""
        text += (f"\n  validated in ONNX Runtime ({', '.join(check.providers)}) on {check.prompts} prompts, "
                 f"{check.positions} positions: max |difference| {check.max_abs_diff:.3g} "
                 f"(largest reference value {check.reference_scale:.3g}){kl}")
    return report.to_json(), text


_EXPORTERS = {"edgec": _export_edgec, "onnx": _export_onnx}
