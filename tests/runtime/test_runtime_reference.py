"""The runtime's reference backend against transformers, on tiny LLaMA, GPT-2 and BERT models exported to `.edgec`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from runtime_helpers import PROMPT, export, transformers_twin

from edgec.core.errors import EdgecError
from edgec.runtime import load


@pytest.fixture(scope="module", params=[("llama", None), ("llama", "int8"), ("llama", "int4:g32"), ("llama", "nf4:g32"),
                                        ("llama", "2:4+int4:g32"), ("gpt2", None), ("gpt2", "int4:g32:asym"),
                                        ("gemma3", None), ("gemma3", "int4:g32")])
def exported(request, tmp_path_factory):
    model_dir = request.getfixturevalue(f"tiny_{request.param[0]}_dir")
    path = export(model_dir, tmp_path_factory.mktemp("rt") / "m.edgec", request.param[1], include_head=True)
    return path, transformers_twin(model_dir, path)


def test_reference_logits_match_transformers(exported):
    path, twin = exported
    model = load(path, backend="reference")
    ids = model.tokenizer.encode(PROMPT)
    with torch.no_grad():
        expected = twin(torch.tensor([ids])).logits[0].numpy()
    got = model.forward(ids)
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max(), rtol=1e-4)


def test_cached_decoding_equals_one_full_forward(exported):
    path, _ = exported
    model = load(path, backend="reference")
    ids = model.tokenizer.encode(PROMPT)
    full = model.forward(ids)
    cache = model.new_cache()
    pieces = [model.forward(ids[:7], cache)] + [model.forward([i], cache) for i in ids[7:]]
    np.testing.assert_allclose(np.concatenate(pieces), full, atol=1e-5 * np.abs(full).max(), rtol=1e-5)
    assert cache.length == len(ids)


def test_greedy_generation_matches_transformers(exported):
    path, twin = exported
    model = load(path, backend="reference")
    ids = model.tokenizer.encode(PROMPT)
    got = list(model.generate_ids(ids, max_new_tokens=16))
    with torch.no_grad():
        out = twin.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert got == out[0, len(ids):].tolist()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gemma3_prefill_and_decode_past_the_window_match_transformers(backend, tiny_gemma3_dir, tmp_path):
    """Sliding layers (window 4) and global ones, each with its rotary base, through prefill and one-token
    steps; the cpu backend runs its per-linear kernels under the Gemma executor (its fused pass is LLaMA's)."""
    from edgec.runtime.backends import available_backends

    if available_backends()[backend] is not None:
        pytest.skip(f"the {backend} backend is not available here")
    path = export(tiny_gemma3_dir, tmp_path / "m.edgec", None)
    model = load(path, backend=backend)
    assert not hasattr(model.executor, "fused")
    ids = model.tokenizer.encode(PROMPT)
    assert len(ids) > 3 * model.config.sliding_window
    with torch.no_grad():
        expected = transformers_twin(tiny_gemma3_dir, path)(torch.tensor([ids])).logits[0].numpy()
    tol = dict(atol=2e-5 * np.abs(expected).max(), rtol=1e-4)
    np.testing.assert_allclose(model.forward(ids), expected, **tol)
    cache = model.new_cache()
    steps = [model.forward(ids[:6], cache)] + [model.forward([i], cache) for i in ids[6:]]
    np.testing.assert_allclose(np.concatenate(steps), expected, **tol)


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny_llama_dir, tmp_path):
    model = load(export(tiny_llama_dir, tmp_path / "m.edgec", None), backend="reference")
    ids = model.tokenizer.encode(PROMPT)
    greedy = list(model.generate_ids(ids, 10))
    assert list(model.generate_ids(ids, 10, temperature=0.8, top_k=1, seed=3)) == greedy
    a = list(model.generate_ids(ids, 10, temperature=1.5, top_p=0.9, seed=7))
    assert a == list(model.generate_ids(ids, 10, temperature=1.5, top_p=0.9, seed=7))
    assert any(list(model.generate_ids(ids, 10, temperature=1.5, seed=s)) != a for s in range(5))


def test_text_generation_streams_and_stops(tiny_llama_dir, tmp_path):
    model = load(export(tiny_llama_dir, tmp_path / "m.edgec", None), backend="reference")
    pieces = list(model.generate(PROMPT, max_new_tokens=12))
    text = "".join(pieces)
    assert text == model.tokenizer.decode(list(model.generate_ids(model.tokenizer.encode(PROMPT), 12)))
    if len(text) > 3:
        stopped = "".join(model.generate(PROMPT, max_new_tokens=12, stop=[text[2:4]]))
        assert stopped == text[:text.find(text[2:4])]
    abandoned = model.generate(PROMPT, max_new_tokens=12)
    next(abandoned)
    abandoned.close()
    assert "".join(model.generate(PROMPT, max_new_tokens=12)) == text  # the model is still usable


def test_runtime_refusals(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", None)
    with pytest.raises(EdgecError, match="unknown backend 'gpu'"):
        load(path, backend="gpu")
    model = load(path, backend="reference", context=16)
    with pytest.raises(EdgecError, match="token ids must lie in"):
        model.forward([10**6])
    with pytest.raises(EdgecError, match="context full"):
        model.forward(list(range(17)))
    assert len(list(model.generate_ids(list(range(10)), max_new_tokens=50))) == 6
    with pytest.raises(EdgecError, match="temperature must be a finite number >= 0"):
        list(model.generate_ids([1, 2], temperature=-1))


def test_encoder_embeddings_match_transformers(tiny_bert_dir, tmp_path):
    path = export(tiny_bert_dir, tmp_path / "bert.edgec", "int8")
    model = load(path, backend="reference")
    twin = transformers_twin(tiny_bert_dir, path)
    texts = [PROMPT, "Mr. Darcy danced only twice."]
    got = model.embed(texts)
    for text, row in zip(texts, got):
        ids = torch.tensor([model.tokenizer.encode(text)])
        with torch.no_grad():
            pooled = twin(ids).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(row, (pooled / pooled.norm()).numpy(), atol=1e-5)
    with pytest.raises(EdgecError, match="holds an encoder"):
        model.forward([1, 2])


def test_configs_the_runtime_cannot_compute_are_refused():
    from edgec.core.errors import ContainerError
    from edgec.runtime.model_config import model_config

    llama = {"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 16, "rms_norm_eps": 1e-5}
    assert model_config("llama", llama).head_dim == 4
    with pytest.raises(ContainerError, match="activation 'gelu'"):
        model_config("llama", {**llama, "hidden_act": "gelu"})
    with pytest.raises(ContainerError, match="lacks 'rms_norm_eps'"):
        model_config("llama", {k: v for k, v in llama.items() if k != "rms_norm_eps"})
    for change, named in (({"num_attention_heads": 0}, "wrong kind|heads"), ({"num_attention_heads": 7}, "divide|heads"),
                          ({"num_key_value_heads": 0}, "kv_heads"), ({"num_key_value_heads": 3}, "divide"),
                          ({"hidden_size": -8}, "hidden_size"), ({"max_position_embeddings": 0}, "max_positions"),
                          ({"rms_norm_eps": "x"}, "epsilon"), ({"vocab_size": True}, "vocab_size"),
                          ({"num_hidden_layers": 1.5}, "layers")):
        with pytest.raises(ContainerError, match=named):
            model_config("llama", {**llama, **change})
    with pytest.raises(ContainerError, match="JSON object"):
        model_config("llama", [])
    with pytest.raises(ContainerError, match="'t5' is not one the runtime runs"):
        model_config("t5", {})


def test_gemma3_configs_the_runtime_cannot_compute_are_refused():
    from edgec.core.errors import ContainerError
    from edgec.runtime.model_config import model_config

    gemma = {"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 4,
             "intermediate_size": 16, "sliding_window": 4, "layer_types": ["sliding_attention", "full_attention"],
             "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}
    config = model_config("gemma3_text", gemma)
    assert [config.window(i) for i in range(2)] == [4, None]
    assert [config.is_sliding(i) for i in range(2)] == [True, False]
    assert (config.sliding_rope["rope_theta"], config.rope["rope_theta"]) == (1e4, 1e6)
    assert config.embedding_scale == pytest.approx(8**0.5) and config.attention_scalar == 256
    assert model_config("gemma3_text", {**gemma, "dtype": "bfloat16"}).embedding_scale == 2.828125
    for change, named in (({"use_bidirectional_attention": True}, "bidirectional"),
                          ({"layer_types": ["sliding_attention"]}, "layer_types"),
                          ({"layer_types": ["sliding_attention", "chunked_attention"]}, "layer_types"),
                          ({"rope_parameters": {}}, "lacks 'full_attention'"),
                          ({"final_logit_softcapping": -1.0}, "logit_softcap"),
                          ({"attn_logit_softcapping": 50.0}, "does not apply it"),
                          ({"hidden_activation": "relu"}, "activation 'relu'")):
        with pytest.raises(ContainerError, match=named):
            model_config("gemma3_text", {**gemma, **change})
