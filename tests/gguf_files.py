"""Tiny Hugging Face models written as float32 GGUF files laid out as llama.cpp's converter writes them
(tensors under gguf's names for the architecture, hyperparameters and the tokenizer as metadata), so that
edgec's GGUF loading is tested without downloads.

The tiny tokenizer is a byte-level BPE, which GGUF stores as its `gpt2` model (tokens in the byte
alphabet, merges); transformers rebuilds it from those.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
from torch import nn


def write_gguf(path: Path, arch: gguf.MODEL_ARCH, model: nn.Module, tokenizer,
               hyperparameters: Callable[[gguf.GGUFWriter], None],
               stored: Callable[[str, np.ndarray], np.ndarray] = lambda name, value: value) -> None:
    """`model` and its fast `tokenizer` as a GGUF file of architecture `arch`.

    `hyperparameters` adds the architecture's own keys to the writer; `stored` gives the value a tensor is
    stored with (Gemma's norms are stored as 1 + weight). A head tied to the embedding is left out, as a
    GGUF without `output` ties them.
    """
    config = model.config
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    hyperparameters(writer)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_bpe_tokenizer(writer, tokenizer, config)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        value = stored(name, tensor.float().numpy())
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), value.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _add_bpe_tokenizer(writer: gguf.GGUFWriter, tokenizer, config) -> None:
    """A byte-level BPE tokenizer as GGUF's `gpt2` tokenizer model, with its special token ids (the model
    config's where the tokenizer names none: transformers' configs default to ids of their full vocabulary)."""
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = [token for token, _ in sorted(bpe["vocab"].items(), key=lambda item: item[1])]
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    for key in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{key}_token_id")
        if token_id is None:
            token_id = getattr(config, f"{key}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(token_id)
