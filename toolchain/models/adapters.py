"""Architecture adapters: which modules of a model are its quantizable linears.

An adapter knows, for one model family, the blocks of the model and the linear
layers of each block in execution order, which of them a runtime fuses (and so
must share a format), and the output head. Everything downstream (evaluation,
passes, planner, exporters) sees linears only through `LinearRef`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from edgec.core.errors import ModelError

Task = Literal["causal-lm", "encoder"]
_ADAPTERS: dict[str, type[Adapter]] = {}


@dataclass(frozen=True)
class LinearRef:
    """A quantizable linear layer: its dotted name, block index and module.

    `transposed` is True for GPT-2's Conv1D, which stores its weight as (in, out);
    `weight()` and `set_weight()` always speak (out, in).
    """

    name: str
    block: int
    module: nn.Module
    transposed: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.module.weight.shape
        return (cols, rows) if self.transposed else (rows, cols)

    def weight(self) -> torch.Tensor:
        """The weight as (out_features, in_features)."""
        w = self.module.weight.detach()
        return w.t() if self.transposed else w

    def set_weight(self, w: torch.Tensor) -> None:
        """Replace the weight's values in place, given (out_features, in_features)."""
        with torch.no_grad():
            target = self.module.weight
            target.copy_((w.t() if self.transposed else w).to(target.dtype))


@dataclass(frozen=True)
class ScaleSource:
    """Where an input scale of a group of linears can be folded (AWQ, SmoothQuant).

    The group's input feature j is produced by the source module's output feature
    `rows[j]` (identity when None): a norm's weight (and bias), or a linear's output
    rows — with GQA, several attention heads read the same value rows, so one scale
    must serve them all.
    """

    module: nn.Module
    rows: torch.Tensor | None = None  # (K,) long


@dataclass(frozen=True)
class ScaleGroup:
    """Linears reading the same input, and the op their input scale folds into (None: not foldable)."""

    consumers: tuple[str, ...]
    source: ScaleSource | None


class Adapter(ABC):
    """Per-family knowledge of a model's structure. Subclasses register with `model_types=`."""

    model_types: ClassVar[tuple[str, ...]]
    task: ClassVar[Task]
    block_linears: ClassVar[tuple[str, ...]]  # paths inside a block, in execution order
    fused: ClassVar[tuple[tuple[str, ...], ...]] = ()  # groups of block_linears a runtime fuses

    def __init_subclass__(cls, model_types: tuple[str, ...] = (), **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for mt in model_types:
            if mt in _ADAPTERS:
                raise TypeError(f"model type {mt!r} already has adapter {_ADAPTERS[mt].__name__}")
            _ADAPTERS[mt] = cls
        cls.model_types = model_types

    @abstractmethod
    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The repeated transformer blocks, in execution order."""

    def head(self, model: nn.Module) -> LinearRef | None:
        """The output projection to the vocabulary, if the model has one."""
        return None

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        """The norm between the last block and the head (None if the blocks' output is final)."""
        return None

    def linears(self, model: nn.Module) -> list[LinearRef]:
        """Every quantizable linear of every block, in execution order (head excluded)."""
        names = {id(m): n for n, m in model.named_modules()}
        refs = []
        for i, block in enumerate(self.blocks(model)):
            for path in self.block_linears:
                module = block.get_submodule(path)
                refs.append(LinearRef(names[id(module)], i, module, transposed=self._is_transposed(module)))
        return refs

    def fused_groups(self, model: nn.Module) -> list[list[str]]:
        """Names of linears that must share one format because a runtime fuses them."""
        names = {id(m): n for n, m in model.named_modules()}
        return [
            [names[id(block.get_submodule(p))] for p in group]
            for block in self.blocks(model)
            for group in self.fused
        ]

    def scale_groups(self, model: nn.Module, block_index: int) -> list[ScaleGroup]:
        """Groups of a block's linears sharing an input, each with the op an input scale folds into."""
        names = {id(m): n for n, m in model.named_modules()}
        block = self.blocks(model)[block_index]
        return [ScaleGroup(tuple(names[id(block.get_submodule(p))] for p in consumers),
                           self._scale_source(model, block, source) if source else None)
                for source, consumers in self.scale_paths]

    scale_paths: ClassVar[tuple[tuple[str | None, tuple[str, ...]], ...]] = ()

    def _scale_source(self, model: nn.Module, block: nn.Module, path: str) -> ScaleSource:
        return ScaleSource(block.get_submodule(path))

    @staticmethod
    def _is_transposed(module: nn.Module) -> bool:
        return type(module).__name__ == "Conv1D"


def _head_ref(model: nn.Module, attr: str = "lm_head") -> LinearRef | None:
    head = getattr(model, attr, None)
    return LinearRef(attr, -1, head) if isinstance(head, nn.Linear) else None


class LlamaFamily(Adapter, model_types=("llama", "mistral", "qwen2", "qwen3")):
    """LLaMA-style decoders: SmolLM2, Llama, Mistral, Qwen2/3 (RMSNorm, GQA, SwiGLU)."""

    task = "causal-lm"
    block_linears = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    fused = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("mlp.gate_proj", "mlp.up_proj"))
    scale_paths = (
        ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("self_attn.v_proj", ("self_attn.o_proj",)),
        ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
        ("mlp.up_proj", ("mlp.down_proj",)),
    )

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.base_model.layers)

    def _scale_source(self, model: nn.Module, block: nn.Module, path: str) -> ScaleSource:
        if path != "self_attn.v_proj":
            return ScaleSource(block.get_submodule(path))
        config = model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        repeat = config.num_attention_heads // config.num_key_value_heads
        j = torch.arange(config.num_attention_heads * head_dim)
        return ScaleSource(block.get_submodule(path), rows=(j // head_dim // repeat) * head_dim + j % head_dim)

    def head(self, model: nn.Module) -> LinearRef | None:
        return _head_ref(model)

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        return model.base_model.norm


class GPT2Family(Adapter, model_types=("gpt2",)):
    """GPT-2: fused qkv projection (Conv1D, weights stored transposed)."""

    task = "causal-lm"
    block_linears = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    scale_paths = (("ln_1", ("attn.c_attn",)), ("attn.c_attn", ("attn.c_proj",)), ("ln_2", ("mlp.c_fc",)),
                   (None, ("mlp.c_proj",)))

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.base_model.h)

    def _scale_source(self, model: nn.Module, block: nn.Module, path: str) -> ScaleSource:
        if path != "attn.c_attn":
            return ScaleSource(block.get_submodule(path))
        hidden = model.config.n_embd
        return ScaleSource(block.get_submodule(path), rows=torch.arange(2 * hidden, 3 * hidden))  # the value outputs

    def head(self, model: nn.Module) -> LinearRef | None:
        return _head_ref(model)

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        return model.base_model.ln_f


class BertFamily(Adapter, model_types=("bert",)):
    """BERT encoders, e.g. all-MiniLM-L6-v2."""

    task = "encoder"
    block_linears = ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "intermediate.dense", "output.dense")
    fused = (("attention.self.query", "attention.self.key", "attention.self.value"),)
    # Post-norm: the LayerNorms before query/key/value and the intermediate also feed the
    # residual stream, so scales there cannot be folded; only the value rows can take one.
    scale_paths = ((None, ("attention.self.query", "attention.self.key", "attention.self.value")),
                   ("attention.self.value", ("attention.output.dense",)),
                   (None, ("intermediate.dense",)), (None, ("output.dense",)))

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.base_model.encoder.layer)


def supported_model_types() -> list[str]:
    """Every `config.model_type` edgec has an adapter for."""
    return sorted(_ADAPTERS)


def adapter_for(model_type: str, source: str = "model") -> Adapter:
    """The adapter of a model type; refuses unknown architectures naming them and the source."""
    cls = _ADAPTERS.get(model_type)
    if cls is None:
        raise ModelError(
            f"{source}: unsupported architecture {model_type!r} (supported: {', '.join(supported_model_types())})"
        )
    return cls()
