"""The architecture figures an executor needs, read from a `.edgec` file's `model.config`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec.runtime.errors import ContainerError

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
    """The ModelConfig of a Hugging Face config dict; refuses families and activations the runtime does not run."""
    parsed = _parse(architecture, config)
    if parsed.activation != ACTIVATIONS[architecture]:
        raise ContainerError(f"a {architecture} model with activation {parsed.activation!r}: the runtime computes "
                             f"{ACTIVATIONS[architecture]!r} for this family")
    return parsed


def _parse(architecture: str, config: dict[str, Any]) -> ModelConfig:
    try:
        if architecture in LLAMA_FAMILY:
            heads = config["num_attention_heads"]
            rope = dict(config.get("rope_parameters") or {})
            if "rope_theta" not in rope:  # configs written before transformers 5 keep it at the top level
                rope["rope_theta"] = config.get("rope_theta", 10000.0)
                rope.update(config.get("rope_scaling") or {})
            rope.setdefault("rope_type", rope.pop("type", "default"))
            return ModelConfig(
                architecture, config["vocab_size"], config["hidden_size"], config["num_hidden_layers"], heads,
                config.get("num_key_value_heads") or heads, config.get("head_dim") or config["hidden_size"] // heads,
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
    except (KeyError, TypeError) as exc:
        raise ContainerError(f"model.config of a {architecture} model lacks or garbles {exc}") from None
    raise ContainerError(f"architecture {architecture!r} is not one the runtime runs "
                         f"(LLaMA family: {', '.join(LLAMA_FAMILY)}; gpt2; bert)")
