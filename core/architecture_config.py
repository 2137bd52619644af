"""A Hugging Face config dict read through its family's description (`edgec.core.architectures`).

The result names the runtime's ModelConfig fields. Nothing is checked beyond what reading needs
(a derived size must divide exactly); the runtime checks the figures, the toolchain and the
exporters read configs transformers has checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgec.core.architectures import (
    REQUIRED,
    Architecture,
    Derived,
    Key,
    LayerTypesSource,
    RotarySource,
    SlidingWindowSource,
)
from edgec.core.errors import ContainerError


def config_values(arch: Architecture, model_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """ModelConfig field -> value of `config`, a model of type `model_type` in family `arch`.

    Raises KeyError naming a required key that is absent, ContainerError where a derived size
    does not divide, and TypeError/ZeroDivisionError on values of the wrong kind.
    """
    values: dict[str, Any] = {}
    for name, spec in arch.config.items():
        values[name] = _derive(spec, values) if isinstance(spec, Derived) else _read(spec, config, values)
    if arch.rotary is not None:
        values.update(_rotary(arch, config))
    if arch.sliding_window is not None:
        values["sliding_window"] = _window(arch.sliding_window, model_type, config)
    if arch.layer_types is not None:
        values["sliding_layers"] = _layer_types(arch.layer_types, config, values["layers"])
    if arch.embedding_scaled:
        values["embedding_scale"] = _in_dtype(math.sqrt(values["hidden_size"]), config.get("dtype"))
    return values


def _read(key: Key, config: Mapping[str, Any], values: dict[str, Any]) -> Any:
    if key.name in config and not (key.null_means_default and config[key.name] is None):
        return config[key.name]
    if key.default is REQUIRED:
        raise KeyError(key.name)
    return _derive(key.default, values) if isinstance(key.default, Derived) else key.default


def _derive(spec: Derived, values: dict[str, Any]) -> Any:
    value = values[spec.field] if spec.times == 1 else values[spec.field] * spec.times  # True stays True, to be refused
    if spec.per is None:
        return value
    quotient, remainder = divmod(value, values[spec.per])
    if remainder:
        raise ContainerError(f"model.config: {spec.field} {value} does not divide into {values[spec.per]} {spec.per}")
    return quotient


def _rotary(arch: Architecture, config: Mapping[str, Any]) -> dict[str, Any]:
    """`rope` (and `sliding_rope` where each attention kind has its own settings)."""
    if not arch.rotary.by_layer_type:
        return {"rope": _rope(arch.rotary, config.get(arch.rotary.parameters), config)}
    per_kind = config[arch.rotary.parameters]  # a KeyError names the key the runtime reports as lacking
    return {"rope": _rope(arch.rotary, per_kind[arch.layer_types.full], {}),
            "sliding_rope": _rope(arch.rotary, per_kind[arch.layer_types.sliding], {})}


def _rope(source: RotarySource, parameters: Mapping[str, Any] | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """The rotary settings: rope_type, rope_theta, partial_rotary_factor if given, and the type's own keys
    (as transformers 5 names them)."""
    rope = dict(parameters or {})
    if "rope_theta" not in rope:  # configs written before transformers 5 keep it at the top level
        rope["rope_theta"] = config.get(source.theta, source.default_theta)
        rope.update(config.get(source.scaling) or {})
    if source.partial in config and "partial_rotary_factor" not in rope:
        rope["partial_rotary_factor"] = config[source.partial]
    rope.setdefault("rope_type", rope.pop("type", "default"))
    return rope


def _window(source: SlidingWindowSource, model_type: str, config: Mapping[str, Any]) -> int | None:
    return config.get(source.key) if config.get(source.switch, model_type in source.on_by_default) else None


def _layer_types(source: LayerTypesSource, config: Mapping[str, Any], layers: int) -> tuple[bool, ...]:
    """Per layer, whether it attends within the window (a kind that is neither is refused as a ValueError)."""
    kinds = tuple(config[source.key])
    if len(kinds) != layers or not set(kinds) <= {source.sliding, source.full}:
        raise ValueError(f"{source.key} must name {source.sliding!r} or {source.full!r} for each of the "
                         f"{layers} layers, got {list(kinds)}")
    return tuple(kind == source.sliding for kind in kinds)


def _in_dtype(value: float, dtype: Any) -> float:
    """`value` rounded to the config's float dtype, as transformers casts a constant to the weights' dtype."""
    if dtype == "float16":
        return float(np.float16(value))
    if dtype == "bfloat16":  # the top 16 bits of the float32, rounded to nearest even
        bits = int(np.float32(value).view(np.uint32))
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return float(np.uint32(bits).view(np.float32))
    return float(np.float32(value))
