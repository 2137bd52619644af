"""A model's tokenizer and generation settings as the files Hugging Face folders carry.

The `.edgec` container stores the tokenizer inside the file; an ONNX export writes these
files beside the `.onnx` file, the way optimum and ONNX Runtime GenAI model folders do, so
that ONNX Runtime plus the `tokenizers` package can run the model with nothing else:

* `tokenizer.json`, `tokenizer_config.json` (and `chat_template.jinja` when the tokenizer
  has one): what transformers' `save_pretrained` writes;
* `generation_config.json` (causal LMs): `bos_token_id`, `eos_token_id` (a list: the
  tokenizer's end-of-sequence token first, then any other the model's generation config
  stops at) and `pad_token_id`, readable by `transformers.GenerationConfig`.

Fixed names mean two exports into one folder share them. That is only allowed when the
files are identical (two compressions of one model); `check_beside` refuses otherwise.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from edgec.core.errors import EdgecError
from edgec.exporters.source import SourceModel

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
GENERATION_CONFIG = "generation_config.json"


def saved_tokenizer(loaded: SourceModel) -> dict[str, bytes]:
    """File name -> contents of the tokenizer as transformers saves it; refuses a tokenizer without `tokenizer.json`."""
    with tempfile.TemporaryDirectory() as tmp:
        loaded.tokenizer.save_pretrained(tmp)
        folder = Path(tmp)
        if not (folder / "tokenizer.json").is_file():
            raise EdgecError(f"{loaded.name}: its tokenizer is not a fast (tokenizers) tokenizer, "
                             "so it has no tokenizer.json to export")
        return {name: (folder / name).read_bytes() for name in TOKENIZER_FILES if (folder / name).is_file()}


def _ids(vocab: int, *values) -> list[int]:
    """The token ids in `values` (each None, an id or a list of ids) that lie in the vocabulary, in order, once."""
    ids = [v for value in values if value is not None for v in (value if isinstance(value, (list, tuple)) else [value])]
    return list(dict.fromkeys(int(v) for v in ids if 0 <= int(v) < vocab))


def generation_settings(loaded: SourceModel) -> dict:
    """The special token ids a generation loop needs (module docstring); an empty list or None where the model has none.

    The tokenizer's ids come first; the model's generation config adds ids the tokenizer does not name
    (Llama 3 instruct stops at three). Ids outside the tokenizer's vocabulary (a config default such as
    GPT-2's 50256 on a model with another vocabulary) are left out.
    """
    tok, config = loaded.tokenizer, getattr(loaded.model, "generation_config", None)
    vocab = len(tok)

    def first(key: str) -> int | None:
        found = _ids(vocab, getattr(tok, key), getattr(config, key, None))
        return found[0] if found else None

    return {"bos_token_id": first("bos_token_id"),
            "eos_token_id": _ids(vocab, tok.eos_token_id, getattr(config, "eos_token_id", None)),
            "pad_token_id": first("pad_token_id")}


def files_beside_model(loaded: SourceModel) -> dict[str, bytes]:
    """Everything an ONNX export writes beside the model file: the tokenizer, and for causal LMs the generation settings."""
    files = saved_tokenizer(loaded)
    if loaded.task == "causal-lm":
        files[GENERATION_CONFIG] = (json.dumps(generation_settings(loaded), indent=2) + "\n").encode()
    return files


def check_beside(folder: Path, files: dict[str, bytes]) -> list[str]:
    """Refuse if `folder` holds a file of one of these names with other contents; return the names still to write."""
    to_write = []
    for name, data in files.items():
        existing = Path(folder) / name
        if not existing.exists():
            to_write.append(name)
        elif not existing.is_file() or existing.read_bytes() != data:
            raise EdgecError(f"{existing} already exists and belongs to another model (or was edited); "
                             "export into another folder, or remove it")
    return to_write
