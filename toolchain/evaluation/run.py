"""`evaluate`: what `edgec eval` does, as a function returning an `EvalReport`."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import asdict, dataclass

import torch

from edgec.assignment import uniform_assignment
from edgec.compress import compress
from edgec.core.formats import parse_format
from edgec.data import EVALUATION_NAME, evaluation_text
from edgec.evaluation.blockwise import compare_rtn_by_block
from edgec.evaluation.causal_lm import LMComparison, token_windows
from edgec.evaluation.encoder import EncoderComparison, compare_encoder, split_sentences
from edgec.footprint import linear_bits_per_weight, model_bytes
from edgec.models.loading import LoadedModel
from edgec.passes import LayerConfig


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation options (the CLI's defaults)."""

    format: str | None = None
    include_head: bool = False
    text: str | None = None  # None = the shipped evaluation text
    text_name: str = EVALUATION_NAME
    seq_len: int = 512
    max_tokens: int | None = 16384
    batch_size: int = 4
    sentences: int = 512
    progress: bool = True
    device: torch.device | None = None  # where the models run (whole, not block by block); None: the CPU


@dataclass
class EvalReport:
    """Everything `edgec eval` prints; `to_dict` is its JSON form."""

    model: str
    weights_sha256: str
    task: str
    text: str
    format: str | None
    method: str | None
    quantized_layers: int
    head_quantized: bool
    bytes_original: int
    bytes_compressed: int | None
    linear_bits_per_weight: float | None  # stored bits per weight of the quantized linears
    seconds: float = 0.0
    lm: LMComparison | None = None
    encoder: EncoderComparison | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(loaded: LoadedModel, settings: EvalSettings) -> EvalReport:
    """Compare `loaded` with its RTN copy in `settings.format` (if any).

    A causal LM is evaluated block by block (`edgec.evaluation.blockwise`): no second copy of
    the model. An encoder (small) is copied whole, compressed, and both run whole.
    """
    start = time.perf_counter()
    model, adapter = loaded.model, loaded.adapter
    assignment = {}
    if settings.format is not None:
        assignment = uniform_assignment(model, adapter, parse_format(settings.format), settings.include_head)
    text = settings.text if settings.text is not None else evaluation_text()
    report = EvalReport(
        model=loaded.name, weights_sha256=loaded.weights_hash, task=loaded.task, text=settings.text_name,
        format=str(parse_format(settings.format)) if settings.format else None,
        method="rtn" if settings.format else None, quantized_layers=len(assignment),
        head_quantized=settings.include_head and settings.format is not None,
        bytes_original=model_bytes(model, adapter),
        bytes_compressed=model_bytes(model, adapter, assignment) if assignment else None,
        linear_bits_per_weight=linear_bits_per_weight(model, adapter, assignment) if assignment else None,
    )
    if loaded.task == "causal-lm":
        windows = token_windows(loaded.tokenizer, text, settings.seq_len, settings.max_tokens)
        report.lm = compare_rtn_by_block(loaded, assignment, windows, settings.batch_size, settings.progress,
                                         settings.device)
    else:
        sentences = split_sentences(text, settings.sentences)
        compressed = _rtn_copy(loaded, assignment, settings.progress) if assignment else None
        if settings.device is not None:
            model.to(settings.device)
            if compressed is not None:
                compressed.to(settings.device)
        report.encoder = compare_encoder(model, compressed, loaded.tokenizer, sentences, progress=settings.progress)
    report.seconds = time.perf_counter() - start
    return report


def _rtn_copy(loaded: LoadedModel, assignment: dict, progress: bool) -> torch.nn.Module:
    """A float32 copy of `loaded`'s model with the assigned linears compressed by RTN."""
    model = loaded.model.float()
    compressed = copy.deepcopy(model)
    compress(dataclasses.replace(loaded, model=compressed), {name: LayerConfig(f, "rtn") for name, f in assignment.items()},
             progress=progress)
    return compressed
