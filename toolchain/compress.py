"""`compress`: apply per-layer compression configs to a model, in place.

The request maps linear names to `LayerConfig`s. Every entry is checked (the
layer exists, the method can produce the format, the shape fits) before any work.
Uncalibrated methods (RTN, magnitude) run directly; if any layer needs
calibration, the whole model goes through the sequential pipeline once and each
block's layers are compressed by their own method inside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgec.assignment import validate_assignment
from edgec.calibration.sequential import BlockCalibration, run_sequential
from edgec.calibration.windows import calibration_windows
from edgec.core.errors import EdgecError
from edgec.core.progress import progress_counter
from edgec.models.adapters import LinearRef
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig, LayerResult, Pass
from edgec.passes.base import Compressed


@dataclass(frozen=True)
class CalibrationSettings:
    """Calibration data: `samples` windows of `seq_len` tokens of the calibration text."""

    samples: int = 32
    seq_len: int = 512
    batch_size: int = 2  # windows per forward call: on 2 cores, 2 x 512 tokens ran 13 % faster than 8
    text: str | None = None  # None = the shipped calibration text


@dataclass
class CompressionResult:
    """Per-layer results in execution order, and what calibration used."""

    layers: dict[str, LayerResult]
    calibration_tokens: int = 0  # tokens of calibration text fed through the model
    calibration_text_tokens: int = 0  # tokens in the whole calibration text


def plan_passes(loaded: LoadedModel, request: Mapping[str, LayerConfig],
                pass_instances: Mapping[str, Pass] | None = None) -> tuple[dict[str, LinearRef], dict[str, Pass]]:
    """Validate a request fully; return the layers and the pass instance of every method used."""
    refs = validate_assignment(loaded.model, loaded.adapter, {n: c.format for n, c in request.items()})
    passes = dict(pass_instances or {})
    for name, config in request.items():
        if config.method not in PASSES:
            raise EdgecError(f"layer {name!r}: unknown method {config.method!r} (known: {', '.join(PASSES)})")
        passes.setdefault(config.method, PASSES[config.method]())
        passes[config.method].check(name, config)
    head = loaded.adapter.head(loaded.model)
    if head is not None and head.name in request and passes[request[head.name].method].calibrated:
        raise EdgecError(f"layer {head.name!r}: the output head is compressed by rtn only (a calibrated method "
                         f"would see its input but not the embedding tied to it)")
    for group in loaded.adapter.fused_groups(loaded.model):
        methods = {request[n].method for n in group if n in request}
        scaling = sorted(m for m in methods if passes[m].scales_shared_input)
        if scaling and len(methods) > 1:
            raise EdgecError(f"layers {', '.join(group)} share an input; {scaling[0]} needs all of them on {scaling[0]}")
    return refs, passes


def compress(loaded: LoadedModel, request: Mapping[str, LayerConfig], calibration: CalibrationSettings | None = None,
             pass_instances: Mapping[str, Pass] | None = None, progress: bool = True,
             device: torch.device | None = None, spill: Path | None = None) -> CompressionResult:
    """Compress `loaded.model` in place as `request` says, calibrating on `device` (None: the CPU); see the
    module docstring. With `spill` (a folder to create), every layer's packed buffers are written there as
    soon as they are made and held as read-only memory maps, so that the results of a large model do not
    stay resident beside the working set of the layers still to compress."""
    refs, passes = plan_passes(loaded, request, pass_instances)
    result = CompressionResult({})
    if spill is not None:
        spill.mkdir()

    def store(name: str, done: Compressed) -> None:
        refs[name].set_weight(torch.from_numpy(done.weight))
        config = request[name]
        packed = config.format.pack(done.encoded, refs[name].shape)
        if spill is not None:
            packed = spilled(packed, spill / str(len(result.layers)))
        result.layers[name] = LayerResult(config, packed, done.input_scale, done.act_scale)

    calibrated = {n for n, c in request.items() if passes[c.method].calibrated}
    for name in progress_counter([n for n in request if n not in calibrated], desc="compressing", unit="layer",
                                 enabled=progress and bool(set(request) - calibrated)):
        config = request[name]
        store(name, passes[config.method].compress(refs[name].weight().float().numpy(), config, None, name))
    if calibrated:
        settings = calibration or CalibrationSettings()
        ids, text_tokens = calibration_windows(loaded.tokenizer, settings.samples, settings.seq_len, settings.text)
        result.calibration_tokens, result.calibration_text_tokens = ids.numel(), text_tokens

        def compress_block(cal: BlockCalibration) -> None:
            in_block = {ref.name for ref in cal.linears} & calibrated
            for method, instance in passes.items():
                mine = {n: request[n] for n in in_block if request[n].method == method}
                if mine:
                    instance.prepare_block(cal, mine)
            for names in _shared_input_runs(cal, [ref.name for ref in cal.linears if ref.name in calibrated], request):
                config = request[names[0]]
                weights = [refs[n].weight().float().numpy() for n in names]
                for name, done in zip(names, passes[config.method].compress_shared(weights, config, cal, names)):
                    store(name, done)

        run_sequential(loaded.model, loaded.adapter, ids, compress_block, settings.batch_size, progress=progress,
                       device=device)
    result.layers = {n: result.layers[n] for n in request}
    return result


def spilled(arrays: Mapping[str, np.ndarray], stem: Path) -> dict[str, np.ndarray]:
    """`arrays` written to `stem.<n>.npy` files and read back as read-only memory maps (empty ones kept as they
    are: an empty file cannot be mapped)."""
    out = {}
    for n, (key, array) in enumerate(arrays.items()):
        if array.size == 0:
            out[key] = array
            continue
        path = stem.with_name(f"{stem.name}.{n}.npy")
        np.save(path, np.ascontiguousarray(array))
        out[key] = np.load(path, mmap_mode="r")
    return out


def _shared_input_runs(cal: BlockCalibration, names: list[str], request: Mapping[str, LayerConfig]) -> list[list[str]]:
    """The block's layers in order, those reading one input under one config gathered together."""
    runs: dict[tuple, list[str]] = {}
    for name in names:
        runs.setdefault((id(cal.stats[name]), request[name]), []).append(name)
    return list(runs.values())
