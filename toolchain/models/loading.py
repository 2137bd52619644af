"""`load_model`: the one entry point from a `--model` argument to a torch model.

`--model` accepts the alias of an embedded model ('smollm2', the default, or
'minilm'), a local Hugging Face model folder, or a `.gguf` file. Loading never
touches the network: HF_HUB_OFFLINE is forced before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from edgec.activation_quant import attach_activation_quant
from edgec.calibration.placement import host_dtype
from edgec.compressed_manifest import activation_scales
from edgec.core.errors import ModelError
from edgec.models.adapters import Adapter, Task, adapter_for
from edgec.models.embedded import DEFAULT_MODEL, EMBEDDED
from edgec.models.gguf_cache import cached_checkpoint, check_gguf_header, gguf_model_type
from edgec.models.hashing import weights_sha256

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


@dataclass
class LoadedModel:
    """A model ready for evaluation and compression, with what identifies it."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: Path
    weights_hash: str
    adapter: Adapter

    @property
    def task(self) -> Task:
        return self.adapter.task


def load_model(spec: str | os.PathLike[str] | None = None, *, keep_16bit: bool = False) -> LoadedModel:
    """Load `spec` (an embedded alias, a model folder or a .gguf file; None = the default) in eval mode.

    Weights are float32, or with `keep_16bit` the checkpoint's own type when it is float16 or
    bfloat16 (`edgec compress` and `edgec plan`, which compute one block at a time in float32:
    see `edgec.calibration.placement`), so that a model takes its 16-bit size in memory.
    """
    text = DEFAULT_MODEL if spec is None else str(spec)
    if text in EMBEDDED:
        embedded = EMBEDDED[text]
        loaded = _load_path(embedded.path(), keep_16bit)
        loaded.name = embedded.display_name
        return loaded
    return _load_path(Path(text), keep_16bit)


def _load_path(path: Path, keep_16bit: bool) -> LoadedModel:
    if not path.exists():
        aliases = ", ".join(EMBEDDED)
        raise ModelError(f"model not found: {path} (give a model folder, a .gguf file, or one of: {aliases})")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{path}: not a model folder or a .gguf file")
        return _load_gguf(path)
    return _load_folder(path, keep_16bit)


def _load_gguf(path: Path) -> LoadedModel:
    check_gguf_header(path)
    adapter = adapter_for(gguf_model_type(path), source=str(path))
    if adapter.task != "causal-lm":
        raise ModelError(f"{path}: only decoder GGUF files are supported")
    sha = weights_sha256(path)
    loaded = _load_folder(cached_checkpoint(path, sha))
    loaded.source, loaded.weights_hash, loaded.name = path, sha, path.stem
    return loaded


def _load_folder(path: Path, keep_16bit: bool = False) -> LoadedModel:
    if not (path / "config.json").exists():
        raise ModelError(f"{path}: no config.json, not a Hugging Face model folder")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except Exception as exc:
        raise ModelError(f"{path}/config.json: unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    adapter = adapter_for(config.model_type, source=str(path))
    auto = AutoModelForCausalLM if adapter.task == "causal-lm" else AutoModel
    try:
        model = auto.from_pretrained(str(path), dtype=host_dtype(config) if keep_16bit else torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"{path}: cannot load weights or tokenizer ({type(exc).__name__}: {first})") from None
    model.eval()
    scales = activation_scales(path)
    if scales:  # a W8A8 model: compute with its 8-bit activations, as a runtime would
        attach_activation_quant(model, scales)
    return LoadedModel(model, tokenizer, path.name, path, weights_sha256(path), adapter)
