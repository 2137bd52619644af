"""The tokenizer stored in a `.edgec` file, run by the `tokenizers` package (not transformers)."""

from __future__ import annotations

from edgec.core.errors import ContainerError, EdgecError
from edgec.core.memory import release_free_memory


class Tokenizer:
    """Text <-> token ids, with the special tokens of the file's `tokenizer.config`."""

    def __init__(self, tokenizer_json: str, config: dict) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            raise EdgecError("text in and out needs the `tokenizers` package (pip install tokenizers); "
                             "token ids work without it") from None
        try:
            self._tok = HFTokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the tokenizers library raises its own untyped exceptions
            raise ContainerError(f"the stored tokenizer cannot be read: {exc}") from None
        release_free_memory()  # what parsing the JSON allocated and freed
        self.config = config
        self.eos_id = self._special_id("eos_token")

    def _special_id(self, key: str) -> int | None:
        token = self.config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        return self._tok.token_to_id(token) if isinstance(token, str) else None

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with the special tokens the tokenizer's post-processor adds."""
        return self._tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens left out."""
        return self._tok.decode(ids, skip_special_tokens=True)
