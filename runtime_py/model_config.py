"""The architecture figures an executor needs, read from a `.edgec` file's `model.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec.core.architecture_config import config_values
from edgec.core.architectures import architecture_for, supported_model_types
from edgec.core.errors import ContainerError
from edgec.runtime.values import is_integer, is_number


@dataclass(frozen=True)
class ModelConfig:
    """Shapes and constants of a transformer, whatever the family (unused fields keep their defaults)."""

    architecture: str
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    max_positions: int
    tie_embeddings: bool = False
    rope: dict[str, Any] | None = None  # rope_parameters: rope_type, rope_theta, partial_rotary_factor, the type's keys
    activation: str = "silu"
    sliding_window: int | None = None
    sliding_layers: tuple[bool, ...] | None = None  # per layer, whether the window applies (None: to every layer)
    sliding_rope: dict[str, Any] | None = None  # the rotary settings of the sliding layers, where they differ
    embedding_scale: float | None = None  # multiplies the embedding's output
    attention_scalar: float | None = None  # attention scores are scaled by its -1/2 power (None: head_dim's)
    attention_softcap: float | None = None  # refused: transformers' Gemma 3 reads it but never applies it
    logit_softcap: float | None = None  # the final logits become cap * tanh(logits / cap)
    bidirectional: bool = False

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def is_sliding(self, layer: int) -> bool:
        """Whether `layer` is one of the sliding layers a config with per-layer attention kinds names."""
        return self.sliding_layers is not None and self.sliding_layers[layer]

    def window(self, layer: int) -> int | None:
        """The attention window of `layer` (None: it attends to every earlier position)."""
        return self.sliding_window if self.sliding_layers is None or self.is_sliding(layer) else None


def model_config(architecture: str, config: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a Hugging Face config dict; refuses families and activations the runtime does not
    run, and figures that cannot describe a model (the error names the field)."""
    if not isinstance(config, dict):
        raise ContainerError(f"model.config should be a JSON object, not {type(config).__name__}")
    parsed = _parse(architecture, config)
    _check_figures(parsed)
    computed = architecture_for(architecture).activation  # the one its family's executor computes
    if parsed.activation != computed:
        raise ContainerError(f"a {architecture} model with activation {parsed.activation!r}: the runtime computes "
                             f"{computed!r} for this family")
    return parsed


def _check_figures(c: ModelConfig) -> None:
    """Sizes are positive integers, heads divide as attention needs, the norm epsilon is a small positive number."""
    for field in ("vocab_size", "hidden_size", "layers", "heads", "kv_heads", "head_dim", "intermediate_size",
                  "max_positions"):
        value, least = getattr(c, field), 2 if field == "max_positions" else 1  # a prompt and one new token
        if not is_integer(value) or not least <= value <= 1 << 24:
            raise ContainerError(f"model.config: {field} must be an integer in {least}..2**24, got {value!r}")
    if c.heads % c.kv_heads:
        raise ContainerError(f"model.config: {c.heads} attention heads do not divide into {c.kv_heads} key/value heads")
    eps = c.norm_eps
    if not is_number(eps) or not 0 < eps < 1:
        raise ContainerError(f"model.config: the norm epsilon must be a number in (0, 1), got {eps!r}")
    for rope in (c.rope, c.sliding_rope):
        theta = (rope or {}).get("rope_theta", 1.0)
        if not is_number(theta) or not 0 < theta < float("inf"):
            raise ContainerError(f"model.config: rope_theta must be a positive number, got {theta!r}")
        factor = (rope or {}).get("partial_rotary_factor", 1.0)
        if not is_number(factor) or not 0 < factor <= 1:
            raise ContainerError(f"model.config: partial_rotary_factor must be a number in (0, 1], got {factor!r}")
    for field in ("embedding_scale", "attention_scalar", "logit_softcap"):
        value = getattr(c, field)
        if value is not None and (not is_number(value) or not 0 < value < float("inf")):
            raise ContainerError(f"model.config: {field} must be a positive number or null, got {value!r}")
    if c.bidirectional is not False:
        raise ContainerError("model.config: bidirectional attention is not supported by the runtime")
    if c.attention_softcap is not None:
        raise ContainerError("model.config: attention logit soft-capping is set, but transformers' Gemma 3 does not "
                             "apply it; the runtime refuses rather than compute another model")
    if c.sliding_window is not None and (not is_integer(c.sliding_window) or c.sliding_window < 1):
        raise ContainerError(f"model.config: sliding_window must be a positive integer, got {c.sliding_window!r}")


def _parse(architecture: str, config: dict[str, Any]) -> ModelConfig:
    arch = architecture_for(architecture)
    if arch is None:
        raise ContainerError(f"architecture {architecture!r} is not one the runtime runs "
                             f"(supported: {', '.join(supported_model_types())})")
    try:
        return ModelConfig(architecture, **config_values(arch, architecture, config))
    except ContainerError:  # a size that does not divide: its message names it
        raise
    except KeyError as exc:
        raise ContainerError(f"model.config of a {architecture} model lacks {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ContainerError(f"model.config of a {architecture} model holds a value of the wrong kind ({exc})") from None
