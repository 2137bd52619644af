"""Loading GGUF files through transformers, with a float checkpoint cached per file.

transformers dequantizes a GGUF on every load (~15 s for the default model) and
refuses `save_pretrained` on the result, so the first load rebuilds the model
from its config, loads the dequantized state dict into it and saves that as a
plain float32 checkpoint (with the tokenizer) under the user's cache directory,
keyed by the file's sha256 and the transformers version. Later loads read the
checkpoint (~2 s). The cache entry is written to a temporary folder and renamed,
so an interrupted conversion leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from gguf import GGUFReader
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers import modeling_gguf_pytorch_utils as gguf_utils
from transformers.utils import logging as hf_logging

from edgec.core.architectures import architecture_for
from edgec.core.errors import ModelError
from edgec.core.output_files import atomic_output

GGUF_MAGIC = b"GGUF"


def cache_root() -> Path:
    """$EDGEC_CACHE_DIR, else $XDG_CACHE_HOME/edgec, else ~/.cache/edgec."""
    if env := os.environ.get("EDGEC_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgec"


def check_gguf_header(path: Path) -> None:
    """Refuse a file that does not start with the GGUF magic."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")


def gguf_model_type(path: Path) -> str:
    """The transformers model type that a GGUF file declares."""
    try:
        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).model_type
    except Exception as exc:  # transformers raises many types on a damaged file
        raise ModelError(f"{path}: corrupt or unreadable GGUF ({_first_line(exc)})") from None


def cached_checkpoint(path: Path, sha256: str) -> Path:
    """The float checkpoint folder for a GGUF file, converting it on first use."""
    entry = cache_root() / "gguf" / f"{sha256[:32]}-transformers{transformers.__version__}"
    if (entry / "config.json").exists():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(entry, folder=True) as tmp:
            _convert(path, tmp)
    except OSError:  # another process finished the same conversion first
        if not (entry / "config.json").exists():
            raise
    return entry


@contextlib.contextmanager
def _plain_progress() -> Iterator[None]:
    """One log line instead of transformers' bar where stderr is no terminal (the bar redraws with carriage returns)."""
    if sys.stderr.isatty():
        yield
        return
    print("converting the GGUF file to a float checkpoint (once per file)", file=sys.stderr, flush=True)
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # the dequantizing loop calls tqdm directly, past transformers' own switch
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()


def _convert(path: Path, out: Path) -> None:
    try:
        with _plain_progress():
            gguf_model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:
        raise ModelError(f"{path}: corrupt or unreadable GGUF ({_first_line(exc)})") from None
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    _restore_dropped_settings(path, config)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _restore_dropped_settings(path: Path, config) -> None:
    """Set on `config` what the file says and transformers' GGUF loader leaves out: the rotated share of each
    head (`rope.dimension_count`: Phi-4-mini rotates 3/4 of each) and, for families whose configs apply a
    window to every layer when they give one (Phi-3), the attention window. Without them a Phi-4-mini
    file would load as a model that rotates whole heads."""
    reader = GGUFReader(str(path))
    arch = gguf_utils.read_field(reader, "general.architecture")[0]
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rotated = gguf_utils.read_field(reader, f"{arch}.rope.dimension_count")
    if rotated and rotated[0] != head_dim and isinstance(getattr(config, "rope_parameters", None), dict):
        config.rope_parameters["partial_rotary_factor"] = rotated[0] / head_dim
    window = gguf_utils.read_field(reader, f"{arch}.attention.sliding_window")
    family = architecture_for(config.model_type)
    source = family.sliding_window if family is not None else None
    if window and source is not None and config.model_type in source.on_by_default:
        config.sliding_window = int(window[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
