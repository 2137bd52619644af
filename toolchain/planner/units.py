"""What the planner chooses over: units of linears that share a format, and candidate (format, method) pairs.

A unit is one linear, or the linears a runtime fuses into one kernel (q/k/v of a
block, gate/up of an MLP), which must share a format so that no exporter later
rejects the plan. The output head is a unit of its own; where the embedding is
tied to it, storing the head in a format stores the embedding in it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgec.core.formats import Format
from edgec.core.formats.sparse24 import Sparse24
from edgec.models.loading import LoadedModel
from edgec.passes.base import is_dense_float

MethodPolicy = Literal["auto", "rtn"]
HEAD_BLOCK = -1


@dataclass(frozen=True)
class Candidate:
    """One way to store a unit: a format and the method that produces it."""

    format: Format
    method: str

    @property
    def key(self) -> str:
        return f"{self.format}@{self.method}"


@dataclass(frozen=True)
class Unit:
    """Linears stored in one format: names in execution order, their (out, in) shapes, their block."""

    layers: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    block: int  # HEAD_BLOCK for the output head

    @property
    def label(self) -> str:
        """The first layer's name, with the others' last components in braces when fused."""
        if len(self.layers) == 1:
            return self.layers[0]
        stem = self.layers[0].rsplit(".", 1)[0]
        return f"{stem}.{{{','.join(n.rsplit('.', 1)[1] for n in self.layers)}}}"

    @property
    def params(self) -> int:
        return sum(n * k for n, k in self.shapes)

    @property
    def is_head(self) -> bool:
        return self.block == HEAD_BLOCK

    def nbytes(self, fmt: Format) -> int:
        """Exact stored bytes of the unit's weights in `fmt`."""
        return sum(fmt.nbytes(shape) for shape in self.shapes)

    def fits(self, fmt: Format) -> bool:
        try:
            for shape in self.shapes:
                fmt.check_shape(shape)
        except ValueError:
            return False
        return True


def planning_units(loaded: LoadedModel, fuse: bool = True, include_head: bool = True) -> list[Unit]:
    """The model's units in execution order (the head last), fused groups kept together if `fuse`."""
    model, adapter = loaded.model, loaded.adapter
    refs = {ref.name: ref for ref in adapter.linears(model)}
    group_of: dict[str, list[str]] = {}
    if fuse:
        for group in adapter.fused_groups(model):
            for name in group:
                group_of[name] = group
    units, seen = [], set()
    for name, ref in refs.items():
        if name in seen:
            continue
        names = group_of.get(name, [name])
        seen.update(names)
        units.append(Unit(tuple(names), tuple(refs[n].shape for n in names), ref.block))
    head = adapter.head(model)
    if include_head and head is not None:
        units.append(Unit((head.name,), (head.shape,), HEAD_BLOCK))
    return units


def method_for(fmt: Format, policy: MethodPolicy, head: bool) -> str:
    """The method that produces `fmt` under `policy`.

    `auto` takes the best method measured per format (docs/passes.md): GPTQ for 2- to
    4-bit group formats, SparseGPT for 2:4 (jointly with its inner format), RTN where
    it is already near-lossless (8- and 16-bit). The head always takes RTN: calibrated
    methods see only its input, not the embedding it is tied to.
    """
    if policy == "rtn" or head or is_dense_float(fmt) or fmt.family in ("int8", "fp8"):
        return "rtn"
    return "sparsegpt" if isinstance(fmt, Sparse24) else "gptq"


def unit_candidates(unit: Unit, formats: list[Format], policy: MethodPolicy) -> list[Candidate]:
    """The candidates for a unit: every format whose shape rules it meets (no 2:4 for the head)."""
    return [Candidate(fmt, method_for(fmt, policy, unit.is_head)) for fmt in formats
            if unit.fits(fmt) and not (unit.is_head and fmt.is_sparse)]
