"""`.edgec` export: an `ExportSource` to the tensors and metadata of docs/FORMAT.md.

What is stored:

* every compressed linear's weight in its format, exactly the buffers compression
  produced (plus its `input_scale` / `act_scale` extras);
* every other linear weight as (N, K), and every other floating-point tensor of the
  state dict in its own shape, as fp16 — or bf16 where a value overflows fp16 — the
  16 bits the planner counts them at;
* a weight shared by two names (a head tied to the embedding) once, under its first
  name in the state dict, with the other name in `edgec.aliases`. A compressed tied
  head stores the embedding in the head's format.

Linear weights are always (out_features, in_features), also where the framework
stores them transposed (GPT-2's Conv1D).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgec.core.errors import EdgecError
from edgec.core.formats import Format, parse_format
from edgec.core.formats.base import FormatError
from edgec.core.version import __version__
from edgec.exporters.edgec_writer import TensorToWrite, WriteReport, write_container
from edgec.exporters.source import ExportSource
from edgec.exporters.tokenizer_files import saved_tokenizer

FP16, BF16 = parse_format("fp16"), parse_format("bf16")
FP16_MAX = 65504.0


def export_edgec(source: ExportSource, out: Path, progress: bool = False, created: str | None = None) -> WriteReport:
    """Write `source` to `out` as an `.edgec` file (atomically); `created` overrides the provenance time."""
    tensors, aliases = container_tensors(source)
    metadata = container_metadata(source, aliases, created)
    return write_container(Path(out), metadata, tensors, progress=progress)


def container_tensors(source: ExportSource) -> tuple[list[TensorToWrite], dict[str, str]]:
    """The tensors to store, in state-dict order, and the aliases of weights stored once."""
    model = source.loaded.model
    linears = {f"{ref.name}.weight": ref for ref in source.loaded.adapter.linears(model)}
    head = source.loaded.adapter.head(model)
    if head is not None:
        linears[f"{head.name}.weight"] = head
    layer_of_tensor = {f"{name}.weight": layer for name, layer in source.layers.items()}
    state = model.state_dict(keep_vars=True)
    first_name: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state.items():
        first_name.setdefault(id(tensor), name)
        if first_name[id(tensor)] != name:
            aliases[name] = first_name[id(tensor)]
    # A compressed tied head stores the shared tensor in the head's format.
    for alias, target in aliases.items():
        if alias in layer_of_tensor and target not in layer_of_tensor:
            layer_of_tensor[target] = layer_of_tensor[alias]
    tensors = []
    for name, tensor in state.items():
        if name in aliases or not tensor.is_floating_point():
            continue
        if name in layer_of_tensor:
            layer = layer_of_tensor[name]
            tensors.append(TensorToWrite(name, layer.format, layer.shape, layer.packed, layer.extras))
            continue
        ref = linears.get(name)
        values = (lambda ref=ref: ref.weight()) if ref is not None else (lambda tensor=tensor: tensor)
        shape = tuple(ref.shape) if ref is not None else tuple(tensor.shape)
        fmt = _float_format(tensor)
        tensors.append(TensorToWrite(name, fmt, shape, _float_producer(name, fmt, values)))
    return tensors, aliases


def container_metadata(source: ExportSource, aliases: dict[str, str], created: str | None = None) -> dict:
    """The metadata of docs/FORMAT.md ("Required keys") for `source`."""
    loaded = source.loaded
    config = loaded.model.config.to_dict()
    tokenizer_json, tokenizer_config = tokenizer_files(loaded)
    plan = source.plan
    return {
        "general.architecture": config["model_type"],
        "general.name": loaded.name,
        "general.task": loaded.task,
        "model.config": config,
        "tokenizer.json": tokenizer_json,
        "tokenizer.config": tokenizer_config,
        "edgec.layers": {name: {"format": str(layer.format), "method": layer.method, "sparsity": layer.sparsity}
                         for name, layer in source.layers.items()},
        "edgec.plan": plan,
        "edgec.aliases": aliases,
        "edgec.device": plan["device"]["name"] if plan else "",
        "provenance.edgec_version": __version__,
        "provenance.created": created or _created(),
        "provenance.source_name": source.source_name,
        "provenance.source_sha256": source.source_hash,
        "provenance.calibration": source.calibration,
    }


def _float_format(tensor: torch.Tensor) -> Format:
    """fp16, or bf16 for a tensor with values beyond fp16's range."""
    return BF16 if float(tensor.detach().abs().max()) > FP16_MAX else FP16


def _float_producer(name: str, fmt: Format, values: Callable[[], torch.Tensor]) -> Callable[[], dict[str, np.ndarray]]:
    """Encode a float tensor when the writer reaches it, naming the tensor if it cannot be stored."""

    def produce() -> dict[str, np.ndarray]:
        try:
            return fmt.quantize(values().detach().float().contiguous().numpy())
        except FormatError as exc:
            raise EdgecError(f"tensor {name!r}: {exc}") from None

    return produce


def tokenizer_files(loaded) -> tuple[str, dict]:
    """The tokenizer's `tokenizer.json` text (compact JSON) and `tokenizer_config.json` object, as transformers saves them."""
    files = saved_tokenizer(loaded)
    compact = json.dumps(json.loads(files["tokenizer.json"]), separators=(",", ":"), ensure_ascii=False)
    return compact, json.loads(files["tokenizer_config.json"])


def _created() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch) if epoch else None))
