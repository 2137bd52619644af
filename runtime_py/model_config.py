"""The architecture figures an executor needs, read from a `.edgec` file's `model.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec.core.errors import ContainerError
from edgec.runtime.values import is_integer, is_number

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")


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
    rope: dict[str, Any] | None = None  # rope_parameters: rope_type, rope_theta and the type's own keys
    activation: str = "silu"
    sliding_window: int | None = None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


# The activation each family's executor computes; a config naming another is refused.
ACTIVATIONS = {**{family: "silu" for family in LLAMA_FAMILY}, "gpt2": "gelu_new", "bert": "gelu"}


def model_config(architecture: str, config: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a Hugging Face config dict; refuses families and activations the runtime does not
    run, and figures that cannot describe a model (the error names the field)."""
    if not isinstance(config, dict):
        raise ContainerError(f"model.config should be a JSON object, not {type(config).__name__}")
    parsed = _parse(architecture, config)
    _check_figures(parsed)
    if parsed.activation != ACTIVATIONS[architecture]:
        raise ContainerError(f"a {architecture} model with activation {parsed.activation!r}: the runtime computes "
                             f"{ACTIVATIONS[architecture]!r} for this family")
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
    if c.architecture not in LLAMA_FAMILY and c.heads * c.head_dim != c.hidden_size:
        raise ContainerError(f"model.config: hidden size {c.hidden_size} is not {c.heads} heads x {c.head_dim}")
    eps = c.norm_eps
    if not is_number(eps) or not 0 < eps < 1:
        raise ContainerError(f"model.config: the norm epsilon must be a number in (0, 1), got {eps!r}")
    theta = (c.rope or {}).get("rope_theta", 1.0)
    if not is_number(theta) or not 0 < theta < float("inf"):
        raise ContainerError(f"model.config: rope_theta must be a positive number, got {theta!r}")
    if c.sliding_window is not None and (not is_integer(c.sliding_window) or c.sliding_window < 1):
        raise ContainerError(f"model.config: sliding_window must be a positive integer, got {c.sliding_window!r}")


def _given(config: dict[str, Any], key: str, default: Any) -> Any:
    """config[key], or `default` where it is absent or null (as transformers reads it; 0 stays 0 and is refused)."""
    value = config.get(key)
    return default if value is None else value


def _parse(architecture: str, config: dict[str, Any]) -> ModelConfig:
    try:
        if architecture in LLAMA_FAMILY:
            heads = config["num_attention_heads"]
            if config.get("head_dim") is None and config["hidden_size"] % heads:
                raise ContainerError(f"model.config: hidden_size {config['hidden_size']} does not divide into "
                                     f"{heads} attention heads (and no head_dim is given)")
            rope = dict(config.get("rope_parameters") or {})
            if "rope_theta" not in rope:  # configs written before transformers 5 keep it at the top level
                rope["rope_theta"] = config.get("rope_theta", 10000.0)
                rope.update(config.get("rope_scaling") or {})
            rope.setdefault("rope_type", rope.pop("type", "default"))
            return ModelConfig(
                architecture, config["vocab_size"], config["hidden_size"], config["num_hidden_layers"], heads,
                _given(config, "num_key_value_heads", heads), _given(config, "head_dim", config["hidden_size"] // heads),
                config["intermediate_size"], config["rms_norm_eps"], config.get("max_position_embeddings", 2048),
                bool(config.get("tie_word_embeddings", False)), rope, config.get("hidden_act", "silu"),
                config.get("sliding_window") if config.get("use_sliding_window", architecture == "mistral") else None)
        if architecture == "gpt2":
            heads = config["n_head"]
            return ModelConfig(architecture, config["vocab_size"], config["n_embd"], config["n_layer"], heads, heads,
                               config["n_embd"] // heads, config.get("n_inner") or 4 * config["n_embd"],
                               config["layer_norm_epsilon"], config["n_positions"], True,
                               activation=config.get("activation_function", "gelu_new"))
        if architecture == "bert":
            heads = config["num_attention_heads"]
            return ModelConfig(architecture, config["vocab_size"], config["hidden_size"], config["num_hidden_layers"],
                               heads, heads, config["hidden_size"] // heads, config["intermediate_size"],
                               config["layer_norm_eps"], config["max_position_embeddings"],
                               activation=config.get("hidden_act", "gelu"))
    except KeyError as exc:
        raise ContainerError(f"model.config of a {architecture} model lacks {exc}") from None
    except (TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ContainerError(f"model.config of a {architecture} model holds a value of the wrong kind ({exc})") from None
    raise ContainerError(f"architecture {architecture!r} is not one the runtime runs "
                         f"(LLaMA family: {', '.join(LLAMA_FAMILY)}; gpt2; bert)")
