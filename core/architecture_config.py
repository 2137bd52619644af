"""A Hugging Face config dict read through its family's description (`edgec.core.architectures`).

The result names the runtime's ModelConfig fields. Nothing is checked beyond what reading needs
(a derived size must divide exactly); the runtime checks the figures, the toolchain and the
exporters read configs transformers has checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgec.core.architectures import REQUIRED, Architecture, Derived, Key, RotarySource, SlidingWindowSource
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
        values["rope"] = _rope(arch.rotary, config)
    if arch.sliding_window is not None:
        values["sliding_window"] = _window(arch.sliding_window, model_type, config)
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


def _rope(source: RotarySource, config: Mapping[str, Any]) -> dict[str, Any]:
    """The rotary settings: rope_type, rope_theta, partial_rotary_factor if given, and the type's own keys
    (as transformers 5 names them)."""
    rope = dict(config.get(source.parameters) or {})
    if "rope_theta" not in rope:  # configs written before transformers 5 keep these at the top level
        rope["rope_theta"] = config.get(source.theta, source.default_theta)
        rope.update(config.get(source.scaling) or {})
    if source.partial in config and "partial_rotary_factor" not in rope:
        rope["partial_rotary_factor"] = config[source.partial]
    rope.setdefault("rope_type", rope.pop("type", "default"))
    return rope


def _window(source: SlidingWindowSource, model_type: str, config: Mapping[str, Any]) -> int | None:
    return config.get(source.key) if config.get(source.switch, model_type in source.on_by_default) else None
