"""Architecture adapters: which modules of a model are its quantizable linears.

An adapter applies a family's description (`edgec.core.architectures`) to a loaded model: the
blocks and the linear layers of each block in execution order, which of them a runtime fuses
(and so must share a format), where input scales fold, and the output head. Everything
downstream (evaluation, passes, planner, exporters) sees linears only through `LinearRef`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgec.core.architecture_config import config_values
from edgec.core.architectures import (
    NORM_WEIGHT_OFFSET,
    Architecture,
    ScaleFold,
    Task,
    architecture_for,
    supported_model_types,
)
from edgec.core.errors import ModelError


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
        """The weight as (out_features, in_features), on the CPU (a view when it is there already)."""
        w = self.module.weight.detach().cpu()
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
    must serve them all. A norm scaling by (offset + weight) takes (offset + weight) / s - offset.
    """

    module: nn.Module
    rows: torch.Tensor | None = None  # (K,) long
    weight_offset: float = 0.0  # what a norm adds to its weight before scaling (Gemma's RMSNorm: 1)


@dataclass(frozen=True)
class ScaleGroup:
    """Linears reading the same input, and the op their input scale folds into (None: not foldable)."""

    consumers: tuple[str, ...]
    source: ScaleSource | None


def _grouped_value_rows(figures: dict[str, Any]) -> torch.Tensor:
    """Grouped-query attention: the value row each input feature of the output projection reads."""
    head_dim, repeat = figures["head_dim"], figures["heads"] // figures["kv_heads"]
    j = torch.arange(figures["heads"] * head_dim)
    return (j // head_dim // repeat) * head_dim + j % head_dim


def _fused_value_rows(figures: dict[str, Any]) -> torch.Tensor:
    """A fused q/k/v projection (rows: queries, keys, values): the value row each input feature of the output
    projection reads, grouped-query aware."""
    q_dim, kv_dim = figures["heads"] * figures["head_dim"], figures["kv_heads"] * figures["head_dim"]
    return q_dim + kv_dim + _grouped_value_rows(figures)


def _fused_up_rows(figures: dict[str, Any]) -> torch.Tensor:
    """A fused gate/up projection (rows: gate, then up): the down projection's input j is up row j times
    the activated gate row j, so its scale folds into the up half."""
    ff = figures["intermediate_size"]
    return torch.arange(ff, 2 * ff)


_ROW_MAPS: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {
    "grouped-values": _grouped_value_rows, "fused-values": _fused_value_rows, "fused-up": _fused_up_rows,
}


class Adapter:
    """A family's structure (`edgec.core.architectures`) applied to a loaded model, task model or base model."""

    def __init__(self, arch: Architecture) -> None:
        self.arch = arch

    @property
    def task(self) -> Task:
        """What the family's models do: "causal-lm" or "encoder"."""
        return self.arch.task

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """The repeated transformer blocks, in execution order."""
        return list(model.base_model.get_submodule(self.arch.in_base(self.arch.blocks)))

    def block_kinds(self, model: nn.Module) -> list[str]:
        """Each block's attention kind: `config.layer_types` where the description says the config lists them
        (Gemma 3: sliding or full), one kind ("") otherwise. Blocks of one kind are called with the same
        arguments besides their input (attention mask, rotary tables)."""
        if self.arch.layer_types is None:
            return [""] * len(self.blocks(model))
        return list(getattr(model.config, self.arch.layer_types.key))

    def head(self, model: nn.Module) -> LinearRef | None:
        """The output projection to the vocabulary, if the model has one."""
        name = self.arch.tensors.get("head")
        head = getattr(model, name, None) if name is not None else None
        return LinearRef(name, -1, head) if isinstance(head, nn.Linear) else None

    def figures(self, model: nn.Module) -> dict[str, Any]:
        """The model's config read through its family's description: the runtime's ModelConfig field names
        ("hidden_size", "heads", "kv_heads", "head_dim", ...), whatever the family calls them."""
        return config_values(self.arch, model.config.model_type, model.config.to_dict())

    def logit_softcap(self, model: nn.Module) -> float | None:
        """The cap the model's final logits are soft-capped at (cap * tanh(logits / cap)), None if they are not."""
        return self.figures(model).get("logit_softcap")

    def final_norm(self, model: nn.Module) -> nn.Module | None:
        """The norm between the last block and the head (None if the blocks' output is final)."""
        name = self.arch.tensors.get("final_norm")
        return model.base_model.get_submodule(self.arch.in_base(name)) if name is not None else None

    def linears(self, model: nn.Module) -> list[LinearRef]:
        """Every quantizable linear of every block, in execution order (head excluded)."""
        names = {id(m): n for n, m in model.named_modules()}
        refs = []
        for i, block in enumerate(self.blocks(model)):
            for role in self.arch.linears:
                module = self._module(block, role)
                refs.append(LinearRef(names[id(module)], i, module, transposed=type(module).__name__ == "Conv1D"))
        return refs

    def fused_groups(self, model: nn.Module) -> list[list[str]]:
        """Names of linears that must share one format because a runtime fuses them."""
        names = {id(m): n for n, m in model.named_modules()}
        return [[names[id(self._module(block, role))] for role in group]
                for block in self.blocks(model) for group in self.arch.fused]

    def scale_groups(self, model: nn.Module, block_index: int) -> list[ScaleGroup]:
        """Groups of a block's linears sharing an input, each with the op an input scale folds into."""
        names = {id(m): n for n, m in model.named_modules()}
        block = self.blocks(model)[block_index]
        return [ScaleGroup(tuple(names[id(self._module(block, role))] for role in fold.consumers),
                           self._scale_source(model, block, fold) if fold.source else None)
                for fold in self.arch.scale_folds]

    def _module(self, block: nn.Module, role: str) -> nn.Module:
        return block.get_submodule(self.arch.block_tensors[role])

    def _scale_source(self, model: nn.Module, block: nn.Module, fold: ScaleFold) -> ScaleSource:
        module = self._module(block, fold.source)
        if fold.rows is None:  # a norm, or a linear whose outputs map one to one
            offset = NORM_WEIGHT_OFFSET[self.arch.norm] if module.weight.dim() == 1 else 0.0
            return ScaleSource(module, weight_offset=offset)
        figures = self.figures(model)
        return ScaleSource(module, rows=_ROW_MAPS[fold.rows](figures))


def adapter_for(model_type: str, source: str = "model") -> Adapter:
    """The adapter of a model type; refuses unknown architectures naming them and the source."""
    arch = architecture_for(model_type)
    if arch is None:
        raise ModelError(
            f"{source}: unsupported architecture {model_type!r} (supported: {', '.join(supported_model_types())})"
        )
    return Adapter(arch)
