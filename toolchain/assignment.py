"""Layer assignments: which storage format each quantizable linear gets.

An assignment maps a linear's dotted name to a `Format`. It is what a plan
holds and what every compression path consumes; a uniform `--format` is just
the assignment that gives every block linear the same format.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from edgec.core.errors import EdgecError, FormatError
from edgec.core.formats import Format, parse_format
from edgec.models.adapters import Adapter, LinearRef

Assignment = dict[str, Format]


def quantizable(model: nn.Module, adapter: Adapter, include_head: bool = False) -> dict[str, LinearRef]:
    """Name -> LinearRef of the block linears, plus the output head if asked (and present)."""
    refs = {ref.name: ref for ref in adapter.linears(model)}
    if include_head:
        head = adapter.head(model)
        if head is None:
            raise EdgecError("this model has no output head to quantize (--include-head)")
        refs[head.name] = head
    return refs


def uniform_assignment(model: nn.Module, adapter: Adapter, fmt: str | Format, include_head: bool = False) -> Assignment:
    """Every block linear (and the head, if asked) in the same format."""
    fmt = parse_format(fmt)
    return {name: fmt for name in quantizable(model, adapter, include_head)}


def validate_assignment(model: nn.Module, adapter: Adapter, assignment: Mapping[str, Format]) -> dict[str, LinearRef]:
    """Check every entry names a linear of the model whose shape its format can store.

    Returns the LinearRefs in assignment order; raises naming the first bad layer.
    """
    refs = quantizable(model, adapter, include_head=adapter.head(model) is not None)
    out = {}
    for name, fmt in assignment.items():
        ref = refs.get(name)
        if ref is None:
            raise EdgecError(f"layer {name!r} is not a quantizable linear of this model")
        try:
            fmt.check_shape(ref.shape)
        except FormatError as exc:
            raise FormatError(f"layer {name!r}: {exc}") from None
        out[name] = ref
    return out
