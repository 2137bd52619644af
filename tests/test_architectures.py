"""The architecture table (edgec.core.architectures) against the tiny models of conftest.py and its three readers.

Every description must name modules the family's models have, config keys their configs have,
and roles it defines; the toolchain's adapters, the runtime (config parsing, executor dispatch)
and the ONNX exporters must accept exactly the model types the table lists, so that a
LLaMA-family variant is one entry in `LLAMA.model_types`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import LLAMA_FAMILIES, TINY_CONFIGS
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

from edgec.core import architectures
from edgec.core.architectures import (
    ARCHITECTURES,
    BERT,
    GPT2,
    LLAMA,
    NORM_PARAMETERS,
    PHI3,
    REQUIRED,
    Derived,
    Key,
    architecture_for,
    supported_model_types,
)
from edgec.exporters.onnx_decoder import DECODERS, LlamaDecoder, build_decoder, kv_shape
from edgec.exporters.onnx_encoder import build_encoder
from edgec.models.adapters import adapter_for
from edgec.runtime.model import EXECUTORS
from edgec.runtime.model_config import ModelConfig, model_config

# The tiny model of each model type conftest.py has no config of (TINY_CONFIGS): a saved folder.
SAVED = {"gpt2": "tiny_gpt2_dir", "bert": "tiny_bert_dir"}
# Qwen3's per-head query/key norms: the executors read them only where a model has them.
OPTIONAL_ROLES = {"q_norm", "k_norm"}
_MODELS: dict[str, nn.Module] = {}


def tiny_model(request: pytest.FixtureRequest, model_type: str) -> nn.Module:
    """The tiny model conftest.py has for `model_type` (a config of TINY_CONFIGS, or a saved folder)."""
    if model_type not in _MODELS:
        torch.manual_seed(0)
        if model_type in TINY_CONFIGS:
            model = AutoModelForCausalLM.from_config(TINY_CONFIGS[model_type]())
        else:
            assert model_type in SAVED, f"conftest.py has no tiny model of type {model_type!r}"
            auto = AutoModelForCausalLM if architecture_for(model_type).task == "causal-lm" else AutoModel
            model = auto.from_pretrained(request.getfixturevalue(SAVED[model_type]))
        _MODELS[model_type] = model.eval()
    return _MODELS[model_type]


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.named_modules())


def test_model_types_are_unique_across_families():
    types = [t for arch in ARCHITECTURES for t in arch.model_types]
    assert len(types) == len(set(types))
    assert supported_model_types() == sorted(types)
    with pytest.raises(ValueError, match="'llama' is in families 'llama' and 'gpt2'"):
        architectures._by_model_type((LLAMA, dataclasses.replace(GPT2, model_types=("gpt2", "llama"))))


def test_families_have_unique_names_and_the_runtime_an_executor_for_each():
    families = [arch.family for arch in ARCHITECTURES]
    assert len(families) == len(set(families))
    assert set(EXECUTORS) == set(families)
    assert set(DECODERS) == {arch.family for arch in ARCHITECTURES if arch.task == "causal-lm"}


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.family)
def test_a_description_uses_only_roles_and_fields_it_defines(arch):
    roles = set(arch.block_tensors)
    assert set(arch.linears) <= roles
    assert {role for group in arch.fused for role in group} <= set(arch.linears)
    for fold in arch.scale_folds:
        assert set(fold.consumers) <= set(arch.linears) and (fold.source is None or fold.source in roles)
    assert [c for fold in arch.scale_folds for c in fold.consumers] == list(arch.linears)  # each linear once, in order
    assert arch.norm in NORM_PARAMETERS
    fields = [f.name for f in dataclasses.fields(ModelConfig)]
    read: list[str] = []
    for name, spec in arch.config.items():
        assert name in fields
        derived = spec if isinstance(spec, Derived) else spec.default
        if isinstance(derived, Derived):  # computed from fields read before it
            assert derived.field in read and (derived.per is None or derived.per in read)
        read.append(name)
    assert "{i}" in arch.block and arch.block_tensor(3, arch.linears[0]).startswith(arch.block.format(i=3) + ".")


@pytest.mark.parametrize("model_type", supported_model_types())
def test_templates_name_modules_the_tiny_model_has(request, model_type):
    arch = architecture_for(model_type)
    model = tiny_model(request, model_type)
    modules = _modules(model)
    layers = len(model.get_submodule(arch.blocks))
    assert layers == model_config(model_type, model.config.to_dict()).layers >= 2
    assert type(model).base_model_prefix == arch.base
    for i in range(layers):
        for role in arch.block_tensors:
            name = arch.block_tensor(i, role)
            assert name in modules or role in OPTIONAL_ROLES, f"{model_type}: {name} ({role})"
        for role in arch.linears:
            assert isinstance(modules[arch.block_tensor(i, role)], (nn.Linear, Conv1D))
    for role, name in arch.tensors.items():
        assert name in modules, f"{model_type}: {name} ({role})"
    if arch.task == "causal-lm":
        assert isinstance(modules[arch.tensors["head"]], nn.Linear)
    norms = [n for r, n in arch.tensors.items() if r.endswith("norm")]
    norms += [arch.block_tensor(i, r) for i in range(layers) for r in arch.block_tensors if r.endswith("norm")]
    for name in (n for n in norms if n in modules):
        parameters = {p for p, _ in modules[name].named_parameters(recurse=False)}
        assert parameters == set(NORM_PARAMETERS[arch.norm]), f"{model_type}: {name}"


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.family)
def test_optional_roles_are_there_in_some_variant(request, arch):
    present = {role for t in arch.model_types for role in arch.block_tensors
               if arch.block_tensor(0, role) in _modules(tiny_model(request, t))}
    assert present == set(arch.block_tensors)


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.family)
def test_config_keys_are_keys_of_the_family_configs(request, arch):
    """Keys without default are in every variant's config; the others in some variant's."""
    configs = [tiny_model(request, t).config.to_dict() for t in arch.model_types]
    keys = [spec for spec in arch.config.values() if isinstance(spec, Key)]
    assert [k.name for k in keys if k.default is REQUIRED and not all(k.name in c for c in configs)] == []
    assert [k.name for k in keys if not any(k.name in c for c in configs)] == []
    if arch.rotary is not None:
        assert all(arch.rotary.parameters in c or arch.rotary.theta in c for c in configs)


@pytest.mark.parametrize("model_type", supported_model_types())
def test_adapters_runtime_and_onnx_accept_every_model_type_alike(request, model_type):
    arch = architecture_for(model_type)
    model = tiny_model(request, model_type)
    adapter = adapter_for(model_type)
    assert adapter.arch is arch and adapter.task == arch.task
    layers = len(adapter.blocks(model))
    assert [r.name for r in adapter.linears(model)] == [arch.block_tensor(i, r) for i in range(layers) for r in arch.linears]
    assert adapter.fused_groups(model) == [[arch.block_tensor(i, r) for r in group] for i in range(layers)
                                           for group in arch.fused]

    config = model_config(model_type, model.config.to_dict())
    assert config.architecture == model_type and arch.family in EXECUTORS
    if arch.task == "causal-lm":
        assert kv_shape(model.config) == (config.layers, config.kv_heads, config.head_dim)
        flat = build_decoder(model)
    else:
        flat = build_encoder(model)
    slots = [m.name for m in flat.modules() if type(m).__name__ == "Slot"]
    head = [arch.tensors["head"]] if arch.task == "causal-lm" else []
    assert slots == [r.name for r in adapter.linears(model)] + head  # the ONNX graph's linears, in order


def test_a_llama_variant_is_one_entry_in_the_table(request, monkeypatch):
    """The family's model types come from LLAMA.model_types; one more there is accepted everywhere."""
    assert {t for t in supported_model_types() if architecture_for(t) is LLAMA} == set(LLAMA.model_types)
    variant = dataclasses.replace(LLAMA, model_types=(*LLAMA.model_types, "llama_variant"))
    monkeypatch.setattr(architectures, "_BY_MODEL_TYPE", architectures._by_model_type((variant, PHI3, GPT2, BERT)))

    model = AutoModelForCausalLM.from_config(LLAMA_FAMILIES["llama"]())
    monkeypatch.setattr(model.config, "model_type", "llama_variant")
    assert adapter_for("llama_variant").arch is variant
    assert [r.name for r in adapter_for("llama_variant").linears(model)][:2] == ["model.layers.0.self_attn.q_proj",
                                                                               "model.layers.0.self_attn.k_proj"]
    config = model_config("llama_variant", model.config.to_dict())
    assert (config.architecture, config.head_dim, config.rope["rope_type"]) == ("llama_variant", 16, "default")
    assert architecture_for(config.architecture).family in EXECUTORS
    assert isinstance(build_decoder(model), LlamaDecoder)
