"""The architecture families edgec runs: one declarative description each, read by every layer.

`ARCHITECTURES` is the one table. The toolchain's adapters, the runtime (config parsing, executor
dispatch, tensor names) and the ONNX exporters read a family's model types, task, config keys,
tensor names, block linears, fused groups and scale-folding paths from it; a LLaMA-family variant
(a new `config.model_type` with LLaMA's structure) is one more entry in `LLAMA.model_types`.
See docs/architecture.md, "Adding an architecture".

Tensor names are those of the model the toolchain loads and exports: the task model for a
causal LM (`LlamaForCausalLM`: `model.layers.0.self_attn.q_proj`), the base model for an encoder
(`BertModel`: `encoder.layer.0.attention.self.query`). A block tensor's name is the family's
`block` template with the block index, then the role's path inside the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["causal-lm", "encoder"]
NormKind = Literal["rms", "rms-offset", "layer"]
RowMap = Literal["grouped-values", "fused-values", "fused-up"]

# The parameters a norm of each kind stores, as suffixes of its name.
NORM_PARAMETERS: dict[str, tuple[str, ...]] = {"rms": ("weight",), "rms-offset": ("weight",), "layer": ("weight", "bias")}
# What a norm of each kind adds to its stored weight before scaling: Gemma's RMSNorm multiplies by (1 + weight).
NORM_WEIGHT_OFFSET: dict[str, float] = {"rms": 0.0, "rms-offset": 1.0, "layer": 0.0}

REQUIRED = object()  # a Key without default: the config must give it


@dataclass(frozen=True)
class Derived:
    """A value computed from ModelConfig fields read before it: `values[field] * times // values[per]`.

    A division must be exact (a hidden size that does not divide into the heads is refused).
    """

    field: str
    times: int = 1
    per: str | None = None


@dataclass(frozen=True)
class Key:
    """A ModelConfig field read from the Hugging Face config key `name`.

    `default` (a value or a `Derived`) serves where the key is absent, and also where it is null
    if `null_means_default` (as the family's transformers config class reads that key).
    """

    name: str
    default: Any = REQUIRED
    null_means_default: bool = False


@dataclass(frozen=True)
class RotarySource:
    """Where a config keeps its rotary settings: the `parameters` dict (transformers 5), or for older
    configs the top-level `theta` (`default_theta` if absent), `scaling` dict and `partial` factor (the
    share of each head's dimensions that rotate)."""

    parameters: str = "rope_parameters"
    theta: str = "rope_theta"
    scaling: str = "rope_scaling"
    partial: str = "partial_rotary_factor"
    default_theta: float = 10000.0
    by_layer_type: bool = False  # `parameters` holds one dict per attention kind (Gemma 3), see LayerTypesSource


@dataclass(frozen=True)
class SlidingWindowSource:
    """Where a config keeps its attention window: `key`, used when the flag `switch` is true (absent:
    true for the model types `on_by_default`)."""

    key: str = "sliding_window"
    switch: str = "use_sliding_window"
    on_by_default: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerTypesSource:
    """Where a config lists each layer's attention kind: `key` holds one of `sliding` (attends within the
    window) or `full` per layer. A family with this source applies the window only to its sliding layers,
    and with `RotarySource.by_layer_type` each kind has its own rotary settings."""

    key: str = "layer_types"
    sliding: str = "sliding_attention"
    full: str = "full_attention"


@dataclass(frozen=True)
class ScaleFold:
    """Block linears reading one input (roles), and the role whose output produces it, where an input
    scale folds (AWQ, SmoothQuant); None: nowhere (a residual or a non-linear op produces it).

    `rows` names how the consumers' input features map onto the source's outputs when not one to
    one: "grouped-values" (grouped-query attention: several heads read one value head), "fused-values"
    (the value rows of a fused q/k/v projection, grouped-query aware), "fused-up" (the up half of a
    fused gate/up projection).
    """

    source: str | None
    consumers: tuple[str, ...]
    rows: RowMap | None = None


@dataclass(frozen=True)
class Architecture:
    """One architecture family, as data (see the module docstring for how tensors are named)."""

    family: str
    model_types: tuple[str, ...]  # the `config.model_type`s of the family
    task: Task
    config: dict[str, Key | Derived]  # ModelConfig field -> how it is read (fields not named keep their defaults)
    base: str  # the task model's attribute holding the base model (transformers' `base_model_prefix`)
    block: str  # the name template of block i, e.g. "model.layers.{i}"
    block_tensors: dict[str, str]  # role -> module path inside a block
    linears: tuple[str, ...]  # the block's quantizable linears (roles), in execution order
    tensors: dict[str, str]  # role -> module name outside the blocks: "embedding", "final_norm", "head", ...
    activation: str  # the MLP's activation, as the config names it
    norm: NormKind
    fused: tuple[tuple[str, ...], ...] = ()  # roles a runtime fuses (they must share a format)
    scale_folds: tuple[ScaleFold, ...] = ()
    rotary: RotarySource | None = None
    sliding_window: SlidingWindowSource | None = None
    layer_types: LayerTypesSource | None = None  # None: every layer attends alike
    embedding_scaled: bool = False  # the embedding's output is multiplied by sqrt(hidden_size) (Gemma)

    def block_tensor(self, i: int, role: str) -> str:
        """The module name of `role` in block `i`, e.g. "model.layers.3.self_attn.q_proj"."""
        return f"{self.block.format(i=i)}.{self.block_tensors[role]}"

    def in_base(self, name: str) -> str:
        """`name` relative to the base model (names outside it are returned unchanged)."""
        return name.removeprefix(f"{self.base}.")

    @property
    def blocks(self) -> str:
        """The module name of the list of blocks, e.g. "model.layers"."""
        return self.block.removesuffix(".{i}")


_LLAMA_ATTENTION = {role: f"self_attn.{role}_proj" for role in "qkvo"}
_LLAMA_MLP = {role: f"mlp.{role}_proj" for role in ("gate", "up", "down")}
_LLAMA_CONFIG: dict[str, Key | Derived] = {
    "vocab_size": Key("vocab_size"),
    "hidden_size": Key("hidden_size"),
    "layers": Key("num_hidden_layers"),
    "heads": Key("num_attention_heads"),
    "kv_heads": Key("num_key_value_heads", Derived("heads"), null_means_default=True),
    "head_dim": Key("head_dim", Derived("hidden_size", per="heads"), null_means_default=True),
    "intermediate_size": Key("intermediate_size"),
    "norm_eps": Key("rms_norm_eps"),
    "max_positions": Key("max_position_embeddings", 2048),
    "tie_embeddings": Key("tie_word_embeddings", False, null_means_default=True),
    "activation": Key("hidden_act", "silu"),
}
_LLAMA_TENSORS = {"embedding": "model.embed_tokens", "final_norm": "model.norm", "head": "lm_head"}

LLAMA = Architecture(
    family="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3"),
    task="causal-lm",
    config=_LLAMA_CONFIG,
    base="model",
    block="model.layers.{i}",
    block_tensors={"attn_norm": "input_layernorm", **_LLAMA_ATTENTION,
                   "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",  # Qwen3 only
                   "mlp_norm": "post_attention_layernorm", **_LLAMA_MLP},
    linears=("q", "k", "v", "o", "gate", "up", "down"),
    tensors=_LLAMA_TENSORS,
    activation="silu",
    norm="rms",
    fused=(("q", "k", "v"), ("gate", "up")),
    scale_folds=(ScaleFold("attn_norm", ("q", "k", "v")), ScaleFold("v", ("o",), rows="grouped-values"),
                 ScaleFold("mlp_norm", ("gate", "up")), ScaleFold("up", ("down",))),
    rotary=RotarySource(),
    sliding_window=SlidingWindowSource(on_by_default=("mistral",)),
)

# LLaMA's structure with q/k/v stored as one projection (rows: queries, keys, values) and gate/up as
# one (rows: gate, then up), rotary positions on a share of each head (`partial_rotary_factor`), and
# the attention window wherever the config gives one.
PHI3 = Architecture(
    family="phi3",
    model_types=("phi3",),
    task="causal-lm",
    config={**_LLAMA_CONFIG, "head_dim": Derived("hidden_size", per="heads")},  # Phi-3 configs have no head_dim
    base="model",
    block="model.layers.{i}",
    block_tensors={"attn_norm": "input_layernorm", "qkv": "self_attn.qkv_proj", "o": "self_attn.o_proj",
                   "mlp_norm": "post_attention_layernorm", "gate_up": "mlp.gate_up_proj", "down": "mlp.down_proj"},
    linears=("qkv", "o", "gate_up", "down"),
    tensors=_LLAMA_TENSORS,
    activation="silu",
    norm="rms",
    scale_folds=(ScaleFold("attn_norm", ("qkv",)), ScaleFold("qkv", ("o",), rows="fused-values"),
                 ScaleFold("mlp_norm", ("gate_up",)), ScaleFold("gate_up", ("down",), rows="fused-up")),
    rotary=RotarySource(),
    sliding_window=SlidingWindowSource(on_by_default=("phi3",)),
)

GPT2 = Architecture(
    family="gpt2",
    model_types=("gpt2",),
    task="causal-lm",
    config={
        "vocab_size": Key("vocab_size"),
        "hidden_size": Key("n_embd"),
        "layers": Key("n_layer"),
        "heads": Key("n_head"),
        "kv_heads": Derived("heads"),
        "head_dim": Derived("hidden_size", per="heads"),
        "intermediate_size": Key("n_inner", Derived("hidden_size", times=4), null_means_default=True),
        "norm_eps": Key("layer_norm_epsilon"),
        "max_positions": Key("n_positions"),
        "tie_embeddings": Key("tie_word_embeddings", True, null_means_default=True),
        "activation": Key("activation_function", "gelu_new"),
    },
    base="transformer",
    block="transformer.h.{i}",
    block_tensors={"attn_norm": "ln_1", "qkv": "attn.c_attn", "o": "attn.c_proj", "mlp_norm": "ln_2",
                   "up": "mlp.c_fc", "down": "mlp.c_proj"},
    linears=("qkv", "o", "up", "down"),
    tensors={"embedding": "transformer.wte", "positions": "transformer.wpe", "final_norm": "transformer.ln_f",
             "head": "lm_head"},
    activation="gelu_new",
    norm="layer",
    scale_folds=(ScaleFold("attn_norm", ("qkv",)), ScaleFold("qkv", ("o",), rows="fused-values"),
                 ScaleFold("mlp_norm", ("up",)), ScaleFold(None, ("down",))),
)

BERT = Architecture(
    family="bert",
    model_types=("bert",),
    task="encoder",
    config={
        "vocab_size": Key("vocab_size"),
        "hidden_size": Key("hidden_size"),
        "layers": Key("num_hidden_layers"),
        "heads": Key("num_attention_heads"),
        "kv_heads": Derived("heads"),
        "head_dim": Derived("hidden_size", per="heads"),
        "intermediate_size": Key("intermediate_size"),
        "norm_eps": Key("layer_norm_eps"),
        "max_positions": Key("max_position_embeddings"),
        "activation": Key("hidden_act", "gelu"),
    },
    base="bert",
    block="encoder.layer.{i}",
    block_tensors={"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                   "o": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
                   "up": "intermediate.dense", "down": "output.dense", "out_norm": "output.LayerNorm"},
    linears=("q", "k", "v", "o", "up", "down"),
    tensors={"embedding": "embeddings.word_embeddings", "positions": "embeddings.position_embeddings",
             "token_types": "embeddings.token_type_embeddings", "embedding_norm": "embeddings.LayerNorm",
             "pooler": "pooler.dense"},  # the pooler is stored, not computed: sentence embeddings mean-pool
    activation="gelu",
    norm="layer",
    fused=(("q", "k", "v"),),
    # Post-norm: the LayerNorms before query/key/value and the intermediate also feed the
    # residual stream, so scales there cannot be folded; only the value rows can take one.
    scale_folds=(ScaleFold(None, ("q", "k", "v")), ScaleFold("v", ("o",)), ScaleFold(None, ("up",)),
                 ScaleFold(None, ("down",))),
)

GEMMA3 = Architecture(
    family="gemma3",
    model_types=("gemma3_text",),
    task="causal-lm",
    config={
        "vocab_size": Key("vocab_size"),
        "hidden_size": Key("hidden_size"),
        "layers": Key("num_hidden_layers"),
        "heads": Key("num_attention_heads"),
        "kv_heads": Key("num_key_value_heads", Derived("heads"), null_means_default=True),
        "head_dim": Key("head_dim", 256, null_means_default=True),
        "intermediate_size": Key("intermediate_size"),
        "norm_eps": Key("rms_norm_eps", 1e-6),
        "max_positions": Key("max_position_embeddings", 131072),
        "tie_embeddings": Key("tie_word_embeddings", True, null_means_default=True),
        "activation": Key("hidden_activation", "gelu_pytorch_tanh", null_means_default=True),
        "attention_scalar": Key("query_pre_attn_scalar", 256),
        "attention_softcap": Key("attn_logit_softcapping", None),
        "logit_softcap": Key("final_logit_softcapping", None),
        "bidirectional": Key("use_bidirectional_attention", False, null_means_default=True),
    },
    base="model",
    block="model.layers.{i}",
    block_tensors={"attn_norm": "input_layernorm", **_LLAMA_ATTENTION,
                   "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm",
                   "attn_out_norm": "post_attention_layernorm", "mlp_norm": "pre_feedforward_layernorm",
                   **_LLAMA_MLP, "mlp_out_norm": "post_feedforward_layernorm"},
    linears=("q", "k", "v", "o", "gate", "up", "down"),
    tensors={"embedding": "model.embed_tokens", "final_norm": "model.norm", "head": "lm_head"},
    activation="gelu_pytorch_tanh",
    norm="rms-offset",
    scale_folds=(ScaleFold("attn_norm", ("q", "k", "v")), ScaleFold("v", ("o",), rows="grouped-values"),
                 ScaleFold("mlp_norm", ("gate", "up")), ScaleFold("up", ("down",))),
    rotary=RotarySource(by_layer_type=True),
    sliding_window=SlidingWindowSource(on_by_default=("gemma3_text",)),
    layer_types=LayerTypesSource(),
    embedding_scaled=True,
)

ARCHITECTURES: tuple[Architecture, ...] = (LLAMA, PHI3, GPT2, BERT, GEMMA3)


def _by_model_type(architectures: tuple[Architecture, ...]) -> dict[str, Architecture]:
    """model type -> its family; refuses a model type claimed by two families."""
    table: dict[str, Architecture] = {}
    for arch in architectures:
        for model_type in arch.model_types:
            if model_type in table:
                raise ValueError(f"model type {model_type!r} is in families {table[model_type].family!r} "
                                 f"and {arch.family!r}")
            table[model_type] = arch
    return table


_BY_MODEL_TYPE = _by_model_type(ARCHITECTURES)


def architecture_for(model_type: str) -> Architecture | None:
    """The family description of a `config.model_type`, None if edgec has none."""
    return _BY_MODEL_TYPE.get(model_type)


def supported_model_types() -> list[str]:
    """Every `config.model_type` some family describes, sorted."""
    return sorted(_BY_MODEL_TYPE)
