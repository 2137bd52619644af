"""`load` and `RuntimeModel`: what an app embeds to run an `.edgec` file (a decoder, or an encoder's `embed`).

    from edgec.runtime import load
    model = load("smollm2.edgec")                 # backend="auto"
    for piece in model.generate("Once upon a time", max_new_tokens=32):
        print(piece, end="", flush=True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from edgec.core.architectures import architecture_for
from edgec.core.errors import ContainerError, EdgecError
from edgec.core.formats import Format
from edgec.core.memory import release_free_memory
from edgec.runtime.backends import make_backend
from edgec.runtime.backends.base import Backend, Kernel
from edgec.runtime.container import EdgecFile, open_container
from edgec.runtime.executors.bert import BertExecutor
from edgec.runtime.executors.common import Weights
from edgec.runtime.executors.gemma3 import Gemma3Executor
from edgec.runtime.executors.gpt2 import GPT2Executor
from edgec.runtime.executors.llama import LlamaExecutor
from edgec.runtime.executors.phi3 import Phi3Executor
from edgec.runtime.kv_cache import KVCache
from edgec.runtime.model_config import ModelConfig, model_config
from edgec.runtime.sampling import SamplingSettings, make_rng, next_token
from edgec.runtime.tokenizer import Tokenizer
from edgec.runtime.values import is_integer

DEFAULT_CONTEXT = 4096


Executor = LlamaExecutor | Phi3Executor | GPT2Executor | BertExecutor | Gemma3Executor
# family (edgec.core.architectures) -> its executor, built from (config, weights, context)
EXECUTORS: dict[str, Callable[[ModelConfig, Weights, int], Executor]] = {
    "llama": LlamaExecutor,
    "phi3": Phi3Executor,
    "gpt2": lambda config, weights, _context: GPT2Executor(config, weights),
    "bert": lambda config, weights, _context: BertExecutor(config, weights),
    "gemma3": Gemma3Executor,
}


def build_executor(file: EdgecFile, backend: Backend, context: int | None) -> tuple[ModelConfig, Weights, Executor, int]:
    """Read the file's config, check it against the task and the stored tensors, and prepare the executor
    on `backend`: (config, weights, executor, context). Every way of opening a model goes through this."""
    meta = file.metadata
    try:
        config = model_config(meta["general.architecture"], meta["model.config"])
    except ContainerError as exc:
        raise ContainerError(f"{file.path}: {exc}") from None
    arch = architecture_for(config.architecture)
    if meta["general.task"] != arch.task:
        raise ContainerError(f"{file.path}: general.task is {meta['general.task']!r}, but a "
                             f"{config.architecture} model is {arch.task!r}")
    context = min(context or DEFAULT_CONTEXT, config.max_positions)
    weights = Weights(file, backend)
    executor = EXECUTORS[arch.family](config, weights, context)
    weights.check_all_used(f"the {config.layers}-layer {config.architecture} model")
    return config, weights, executor, context


class _CheckOnly(Backend):
    """A backend that prepares nothing: building an executor on it checks a file's config against its tensors."""

    name = "check"

    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        def refuse(x: np.ndarray) -> np.ndarray:
            raise EdgecError("a model opened only to be checked computes nothing")
        return refuse, 0


def check_model(file: EdgecFile) -> ModelConfig:
    """What `load` checks before it prepares any weight: the config's figures, the task, and that the stored
    tensors are exactly the ones the config describes, with its shapes (raises ContainerError naming the file)."""
    return build_executor(file, _CheckOnly(), 2)[0]


class RuntimeModel:
    """A loaded `.edgec` model: `forward` for logits, `generate` for text, `tokenizer` for ids."""

    def __init__(self, file: EdgecFile, backend: str = "auto", context: int | None = None,
                 accuracy: str = "exact", threads: int | None = None) -> None:
        self.file = file
        self.backend = make_backend(backend, accuracy, threads)
        self.config, self.weights, self.executor, self.context = build_executor(file, self.backend, context)
        self._tokenizer: Tokenizer | None = None

    @property
    def is_encoder(self) -> bool:
        return architecture_for(self.config.architecture).task == "encoder"

    def _need(self, encoder: bool, what: str) -> None:
        if self.is_encoder != encoder:
            kind = "an encoder" if self.is_encoder else "a decoder"
            raise EdgecError(f"{self.file.path} holds {kind} ({self.config.architecture}); {what} needs "
                             f"{'an encoder' if encoder else 'a decoder'}")

    def embed(self, texts: str | Sequence[str]) -> np.ndarray:
        """Sentence embeddings (n, hidden) of an encoder: the mean of the last hidden states, L2-normalised
        (sentence-transformers' pooling for all-MiniLM-L6-v2)."""
        self._need(True, "embed")
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.empty((len(texts), self.config.hidden_size), np.float32)
        for i, text in enumerate(texts):
            ids = np.asarray(self.tokenizer.encode(text)[: self.config.max_positions], dtype=np.int64)
            pooled = self.executor.hidden_states(ids).mean(axis=0)
            out[i] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out

    @property
    def tokenizer(self) -> Tokenizer:
        """The file's tokenizer (built on first use)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.file.metadata.read("tokenizer.json"), self.file.metadata["tokenizer.config"])
        return self._tokenizer

    def new_cache(self) -> KVCache:
        """An empty KV cache at the model's context length (decoders)."""
        self._need(False, "a KV cache")
        return self.executor.new_cache(self.context)

    def forward(self, ids: Sequence[int] | np.ndarray, cache: KVCache | None = None, all_logits: bool = True) -> np.ndarray:
        """Logits (T, vocab) of `ids` following what `cache` holds (a fresh cache if None); the cache takes the ids."""
        self._need(False, "forward")
        ids = _token_ids(ids)
        if ids.size == 0:
            raise EdgecError("forward needs at least one token id")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise EdgecError(f"{self.file.path}: token ids must lie in 0..{self.config.vocab_size - 1} "
                             f"(the model's vocabulary), got {int(ids.min())}..{int(ids.max())}")
        logits = self.executor.forward(ids, cache if cache is not None else self.new_cache(), all_logits)
        # A cpu kernel writes each call into a buffer it reuses (the head's too, where no fused pass
        # runs): the caller keeps logits of its own.
        return np.array(logits, copy=True)

    def generate_ids(self, prompt_ids: Sequence[int], max_new_tokens: int = 128, temperature: float = 0.0,
                     top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                     stop_ids: Sequence[int] = ()) -> Iterator[int]:
        """Token ids continuing `prompt_ids`, one at a time, until `max_new_tokens`, a stop id or the context is full.

        Each call starts from an empty cache, so a generation the caller abandons leaves nothing behind.
        """
        self._need(False, "generation")
        if not is_integer(max_new_tokens) or max_new_tokens < 1:
            raise EdgecError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        settings = SamplingSettings(temperature, top_k, top_p)
        rng = make_rng(seed)
        cache = self.new_cache()
        prompt = list(prompt_ids)
        if len(prompt) + 1 > self.context:
            raise EdgecError(f"the prompt's {len(prompt)} tokens leave no room in the context of {self.context}")
        logits = self.forward(prompt, cache, all_logits=False)[-1]
        for _ in range(min(max_new_tokens, self.context - len(prompt))):
            token = next_token(logits, settings, rng)
            yield token
            if token in stop_ids or cache.length >= self.context:
                return
            logits = self.forward([token], cache, all_logits=False)[-1]

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 128, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None,
                 stop: Sequence[str] = ()) -> Iterator[str]:
        """Text continuing `prompt` (a string or token ids), streamed piece by piece.

        Stops at the end-of-sequence token, at any string of `stop` (not yielded), or after `max_new_tokens`.
        """
        if isinstance(stop, str) or any(not isinstance(s, str) or not s for s in stop):
            raise EdgecError(f"stop must be a list of non-empty strings, got {stop!r}")
        tok = self.tokenizer
        ids = tok.encode(prompt) if isinstance(prompt, str) else list(prompt)
        generated: list[int] = []
        shown = ""
        eos = [tok.eos_id] if tok.eos_id is not None else []
        for token in self.generate_ids(ids, max_new_tokens, temperature, top_k, top_p, seed, eos):
            if token in eos:
                break
            generated.append(token)
            text = tok.decode(generated)
            if text.endswith("\ufffd"):  # a multi-byte character not complete yet
                continue
            cut = min((i for i in (text.find(s, max(len(shown) - len(s), 0)) for s in stop) if i >= 0), default=-1)
            if cut >= 0:
                if cut > len(shown):
                    yield text[len(shown):cut]
                return
            yield text[len(shown):]
            shown = text

    def close(self) -> None:
        """Release the file (views of it that are still referenced keep it mapped)."""
        self.file.close()


def _token_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """`ids` as a flat int64 array; refuses floats, booleans and anything else that is not a token id."""
    array = np.asarray(ids)
    if array.size and array.dtype.kind not in "iu":
        raise EdgecError(f"token ids must be integers, got an array of {array.dtype}")
    return array.astype(np.int64).reshape(-1)


def load(path: str | os.PathLike[str], backend: str = "auto", context: int | None = None,
         verify: bool = True, accuracy: str = "exact", threads: int | None = None) -> RuntimeModel:
    """Open an `.edgec` file and prepare it on `backend` ('auto', 'reference', ...) for `context` tokens.

    accuracy="int8" quantizes activations to int8 for int4/int8 layers (decode and prefill) on the
    cpu backend (faster, not exact; see docs/runtime.md); the default computes exactly.
    threads sets the cpu kernels' threads (process-wide; default: every CPU this process may use).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise EdgecError(f"load needs the path of an .edgec file, got {path!r}")
    for name, value, least in (("context", context, 2), ("threads", threads, 1)):
        if value is not None and (not is_integer(value) or value < least):
            raise EdgecError(f"{name} must be an integer >= {least} or None, got {value!r}")
    file = open_container(path, verify=verify)
    try:
        model = RuntimeModel(file, backend, context, accuracy, threads)
    except BaseException:
        file.close()
        raise
    release_free_memory()  # temporaries of preparing the weights
    return model
