"""What the planner's file schemas (device profiles, plans) share: a strict base model,
strict numbers, and the one-line error that names the file, the field and why.
"""

from __future__ import annotations

import difflib
import math
import typing
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from edgec.core.errors import EdgecError

# YAML reads `yes` as true and `.inf` as infinity; a lax float field took true as 1 GB/s.
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True)]


def _finite_figure(value: object) -> int | float:
    """An int kept an int, a float kept a float; a bool, a string or an infinity refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number_type", "Input should be a valid number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value if isinstance(value, int) else float(value)


Figure = Annotated[int | float, PlainValidator(_finite_figure)]
"""A finite number written as it was given: an integer stays an integer (a byte limit), a float a float."""


class StrictModel(BaseModel):
    """A schema node: unknown fields refused (a typo must not pass silently), values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def schema_error(exc: ValidationError, model: type[BaseModel], origin: str, whole: str) -> EdgecError:
    """`exc` as one line: `origin: field a.b: why`; an unknown field with the field meant, or those allowed
    there. `whole` names the field of an error about the whole document (a cross-field check)."""
    errors = exc.errors()
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    err = (unknown or errors)[0]  # a typo'd field also makes the field it meant "required": name the typo
    where = _path(err["loc"]) or whole
    if unknown:
        known = _fields_at(model, err["loc"][:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        return EdgecError(f"{origin}: field {where}: unknown field{hint}")
    why = "Input should be a mapping" if err["type"] == "model_type" else err["msg"]  # not the model class's name
    return EdgecError(f"{origin}: field {where}: {why}")


def _path(loc: tuple) -> str:
    """`totals.weights_bytes`, `units.0.loss`; a key holding dots in brackets: `layers['model.layers.0.mlp.up_proj'].format`."""
    path = ""
    for part in loc:
        text = str(part)
        path += f"[{text!r}]" if "." in text else f".{text}" if path else text
    return path


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at `loc` under `model`: the model reached through its fields, dict
    values, list items and optional values."""
    annotation: object = model
    for part in loc:
        annotation = _part_type(_not_none(annotation), part)
    reached = _not_none(annotation)
    return list((reached if isinstance(reached, type) and issubclass(reached, BaseModel) else model).model_fields)


def _part_type(annotation: object, part: object) -> object:
    """The type at `part` (a field name, a dict key or a list index) inside `annotation`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return None if field is None else field.annotation
    args = typing.get_args(annotation)
    return args[-1] if args else None  # dict[K, V]: V; list[T]: T


def _not_none(annotation: object) -> object:
    """`T` of an optional `T | None`; any other type as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(annotation) else annotation
