"""Architecture adapters checked against what tiny random models actually execute.

Every family edgec supports is built from a config (no downloads) and its adapter's
view of the model (linears in execution order, fused groups, head) is compared with
forward hooks on the real modules.
"""

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_gemma3_config
from torch import nn
from transformers import AutoModelForCausalLM, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel
from transformers.pytorch_utils import Conv1D

from edgec.core.architectures import LLAMA
from edgec.core.errors import EdgecError, ModelError
from edgec.models.adapters import Adapter, LinearRef, adapter_for, supported_model_types

VOCAB = 128
SEQ = 6


def _build(family):
    torch.manual_seed(0)
    if family == "gemma3_text":  # two layers: a sliding one and a global one
        config = tiny_gemma3_config()
        config.vocab_size, config.max_position_embeddings, config.tie_word_embeddings = VOCAB, 64, False
        config.num_hidden_layers, config.layer_types = 2, config.layer_types[:2]
        model = AutoModelForCausalLM.from_config(config)
    elif family in TINY_CONFIGS:  # conftest.py's config of each LLaMA-family variant and Phi-3, at this test's sizes
        config = TINY_CONFIGS[family]()
        config.vocab_size, config.max_position_embeddings, config.tie_word_embeddings = VOCAB, 64, False
        model = AutoModelForCausalLM.from_config(config)
    elif family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64,
                                          bos_token_id=0, eos_token_id=0))
    elif family == "bert":
        model = BertModel(BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, vocab_size=VOCAB, max_position_embeddings=64))
    else:
        raise AssertionError(family)
    return model.eval()


FAMILIES = supported_model_types()
# Linears the model runs outside its blocks that are neither blocks' nor the head's:
# BERT's pooler is not part of an encoder block (sentence embedders don't use it).
OUTSIDE_BLOCKS = {"bert": ["pooler.dense"]}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run ~100x faster on one thread than contending for shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param


_CACHE = {}


@pytest.fixture
def model(family):
    if family not in _CACHE:
        _CACHE[family] = _build(family)
    return _CACHE[family]


@pytest.fixture
def fresh_model(family):
    """A model of its own, for tests that modify weights."""
    return _build(family)


def _inputs():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, VOCAB, (1, SEQ), generator=g)}


def _out(model):
    with torch.no_grad():
        out = model(**_inputs())
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def _trace_linears(model):
    """Names and inputs of every Linear/Conv1D call (lm_head excluded), in execution order."""
    calls = []
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)) and name != "lm_head":
            hooks.append(mod.register_forward_hook(
                lambda m, args, out, name=name: calls.append((name, args[0].detach().clone()))))
    try:
        _out(model)
    finally:
        for h in hooks:
            h.remove()
    return calls


def _block_prefixes(adapter, model):
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(b)] for b in adapter.blocks(model)]


def test_supported_model_types_lists_every_family_sorted():
    types = supported_model_types()
    assert types == sorted(types)
    assert {"llama", "mistral", "qwen2", "qwen3", "gpt2", "bert"} <= set(types)


def test_adapter_for_each_family_has_the_right_task(family, model):
    assert model.config.model_type == family
    adapter = adapter_for(family)
    assert isinstance(adapter, Adapter)
    assert adapter.task == ("encoder" if family == "bert" else "causal-lm")


def test_linears_are_every_block_linear_in_execution_order(family, model):
    adapter = adapter_for(family)
    refs = adapter.linears(model)
    calls = [name for name, _ in _trace_linears(model)]
    prefixes = _block_prefixes(adapter, model)
    assert len(prefixes) == 2

    def in_block(name):
        return any(name.startswith(p + ".") for p in prefixes)

    assert [n for n in calls if not in_block(n)] == OUTSIDE_BLOCKS.get(family, [])
    assert [r.name for r in refs] == [n for n in calls if in_block(n)]

    # None missed even if it were not executed: every Linear/Conv1D module inside a block is listed.
    in_blocks = {n for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and in_block(n)}
    assert {r.name for r in refs} == in_blocks
    assert len(refs) == len(in_blocks)  # no duplicates


def test_linear_refs_name_their_module_and_block(family, model):
    adapter = adapter_for(family)
    prefixes = _block_prefixes(adapter, model)
    for ref in adapter.linears(model):
        assert isinstance(ref, LinearRef)
        assert model.get_submodule(ref.name) is ref.module
        assert ref.name.startswith(prefixes[ref.block] + ".")
        assert ref.transposed == isinstance(ref.module, Conv1D)
    assert {r.transposed for r in adapter.linears(model)} == {family == "gpt2"}


def test_shape_is_out_in_and_matches_what_the_module_computes(family, model):
    torch.manual_seed(2)
    for ref in adapter_for(family).linears(model):
        w = ref.weight()
        assert ref.shape == tuple(w.shape)
        out_f, in_f = ref.shape
        x = torch.randn(3, in_f)
        with torch.no_grad():
            y = ref.module(x)
        assert y.shape == (3, out_f)
        bias = ref.module.bias if ref.module.bias is not None else 0
        torch.testing.assert_close(y, x @ w.T + bias, rtol=1e-5, atol=1e-5)


def test_gpt2_conv1d_shapes_are_reported_transposed():
    model = _build("gpt2")
    refs = {r.name: r for r in adapter_for("gpt2").linears(model)}
    assert refs["transformer.h.0.attn.c_attn"].shape == (3 * 64, 64)
    assert refs["transformer.h.0.mlp.c_fc"].shape == (4 * 64, 64)
    assert refs["transformer.h.0.mlp.c_proj"].shape == (64, 4 * 64)
    assert refs["transformer.h.0.mlp.c_fc"].module.weight.shape == (64, 4 * 64)  # stored (in, out)


def test_set_weight_round_trips_and_changes_the_output(family, fresh_model):
    model = fresh_model
    refs = adapter_for(family).linears(model)
    before = _out(model)
    # A non-square linear of each block (MLP up/fc) and the first one (q / c_attn / query).
    targets = [refs[0]] + [r for r in refs if r.shape[0] != r.shape[1]][:2]
    for ref in targets:
        original = ref.weight().clone()
        new = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3)) * 0.05
        ref.set_weight(new)
        assert torch.equal(ref.weight(), new)
        assert tuple(ref.module.weight.shape) == (tuple(reversed(ref.shape)) if ref.transposed else ref.shape)
        # the module really computes with the new (out, in) weight
        x = torch.randn(2, ref.shape[1])
        bias = ref.module.bias if ref.module.bias is not None else 0
        with torch.no_grad():
            torch.testing.assert_close(ref.module(x), x @ new.T + bias, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(_out(model), before)
        ref.set_weight(original)
        assert torch.equal(ref.weight(), original)
        torch.testing.assert_close(_out(model), before)


def test_set_weight_refuses_a_wrong_shape(family, fresh_model):
    ref = next(r for r in adapter_for(family).linears(fresh_model) if r.shape[0] != r.shape[1])
    with pytest.raises(RuntimeError):
        ref.set_weight(torch.zeros(tuple(reversed(ref.shape))))


def _expected_fused(family, n_blocks):
    if family in LLAMA.model_types:
        return [g for i in range(n_blocks) for g in (
            [f"model.layers.{i}.self_attn.{p}_proj" for p in "qkv"],
            [f"model.layers.{i}.mlp.gate_proj", f"model.layers.{i}.mlp.up_proj"])]
    if family == "bert":
        return [[f"encoder.layer.{i}.attention.self.{p}" for p in ("query", "key", "value")]
                for i in range(n_blocks)]
    return []


def test_fused_groups_name_qkv_and_gate_up_of_each_block(family, model):
    adapter = adapter_for(family)
    groups = adapter.fused_groups(model)
    assert groups == _expected_fused(family, len(adapter.blocks(model)))
    names = {r.name for r in adapter.linears(model)}
    for group in groups:
        assert set(group) <= names


def test_fused_group_members_read_the_same_input(family, model):
    """What a runtime fuses must consume one activation: check it on the real forward pass."""
    inputs = dict(_trace_linears(model))
    for group in adapter_for(family).fused_groups(model):
        first = inputs[group[0]]
        for name in group[1:]:
            torch.testing.assert_close(inputs[name], first, rtol=0, atol=0)


def test_head_is_lm_head_for_causal_lms_and_none_for_encoders(family, model):
    adapter = adapter_for(family)
    head = adapter.head(model)
    if family == "bert":
        assert head is None
        return
    assert head.name == "lm_head"
    assert head.block == -1
    assert head.module is model.lm_head
    assert not head.transposed
    assert head.shape == tuple(head.weight().shape) == (VOCAB, 64)
    assert "lm_head" not in {r.name for r in adapter.linears(model)}


def test_head_is_none_for_a_decoder_without_head():
    model = _build("llama").base_model
    adapter = adapter_for("llama")
    assert adapter.head(model) is None
    assert adapter.linears(model)[0].name == "layers.0.self_attn.q_proj"


def test_unknown_architecture_is_refused_naming_it_and_the_source():
    with pytest.raises(ModelError) as info:
        adapter_for("t5", source="some/dir")
    msg = str(info.value)
    assert "t5" in msg and "some/dir" in msg
    assert "\n" not in msg
    assert isinstance(info.value, EdgecError)
