"""The cpu backend's fused decoder pass (kernels/cpu/decoder.c) against transformers and the executor's own steps.

Every LLaMA-family variant the runtime names is covered: LLaMA, Mistral (a sliding window
shorter than the prompt), Qwen2 (q/k/v biases) and Qwen3 (per-head q/k norms).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from runtime_helpers import PROMPT, export, transformers_twin

from edgec.commands.compression_options import CompressionOptions, run_compression
from edgec.core.errors import EdgecError
from edgec.export_sources import source_from_result
from edgec.exporters.edgec_export import export_edgec
from edgec.models.loading import load_model
from edgec.runtime import load
from edgec.runtime.backends import available_backends

pytestmark = pytest.mark.skipif(available_backends()["cpu"] is not None, reason="the CPU kernels were not built")

def python_steps(model):
    """The model with its fused pass switched off: the executor's numpy steps around the same kernels."""
    model.executor.fused = None
    return model


def test_every_family_matches_transformers_on_the_fused_pass(family_dir, tmp_path):
    path = export(family_dir, tmp_path / "m.edgec", None)
    model = load(path, backend="cpu")
    assert model.executor.fused is not None
    ids = model.tokenizer.encode(PROMPT + " of a good fortune")
    assert len(ids) > 8  # past Mistral's window
    with torch.no_grad():
        expected = transformers_twin(family_dir, path)(torch.tensor([ids])).logits[0].numpy()
    tol = dict(atol=2e-5 * np.abs(expected).max(), rtol=1e-4)
    np.testing.assert_allclose(model.forward(ids), expected, **tol)
    cache = model.new_cache()
    steps = [model.forward(ids[:5], cache)] + [model.forward([i], cache) for i in ids[5:]]
    np.testing.assert_allclose(np.concatenate(steps), expected, **tol)
    reference = load(path, backend="reference")
    assert list(model.generate_ids(ids, 16)) == list(reference.generate_ids(ids, 16))


# With int8 activations a difference in the last bit of a norm's output (the two paths sum in
# other orders) can move an activation code by one, which moves a logit by up to ~1e-2 of its scale.
TOLERANCE = {"exact": 1e-5, "int8": 2e-2}


@pytest.mark.parametrize("fmt", ["int4:g32", "int8", "int4:g32:asym", "2:4+int4:g32", "nf4:g32"])
@pytest.mark.parametrize("accuracy", ["exact", "int8"])
def test_fused_pass_equals_the_python_steps(fmt, accuracy, tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", fmt, include_head=True)
    fused, steps = load(path, accuracy=accuracy), python_steps(load(path, accuracy=accuracy))
    ids = fused.tokenizer.encode(PROMPT)
    caches = fused.new_cache(), steps.new_cache()
    for chunk in (ids[:9], ids[9:10], ids[10:12], ids[12:13]):
        a, b = fused.forward(chunk, caches[0]), steps.forward(chunk, caches[1])
        np.testing.assert_allclose(a, b, atol=TOLERANCE[accuracy] * np.abs(b).max(), rtol=1e-5)
    for kept in ("key_array", "value_array"):
        expected = getattr(caches[1], kept)
        np.testing.assert_allclose(getattr(caches[0], kept), expected, atol=TOLERANCE[accuracy] * np.abs(expected).max())
    last = fused.forward(ids[13:], caches[0], all_logits=False)
    assert last.shape == (1, fused.config.vocab_size)


def test_int8_activations_stay_close_to_exact(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int4:g32", include_head=True)
    exact, int8 = load(path), load(path, accuracy="int8")
    ids = exact.tokenizer.encode(PROMPT)
    caches = exact.new_cache(), int8.new_cache()
    exact.forward(ids, caches[0]), int8.forward(ids, caches[1])
    a, b = exact.forward([5], caches[0]), int8.forward([5], caches[1])
    assert not np.array_equal(a, b)  # decode took the integer path
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()


def test_quantized_activations_take_the_python_path(tiny_llama_dir, tmp_path):
    loaded = load_model(tiny_llama_dir)
    options = CompressionOptions("int8", None, "smoothquant", None, False, 1, 16, True, 0.01, False, 0.5)
    export_edgec(source_from_result(loaded, run_compression(loaded, options, None).result), tmp_path / "w8a8.edgec")
    cpu, reference = load(tmp_path / "w8a8.edgec"), load(tmp_path / "w8a8.edgec", backend="reference")
    assert cpu.executor.fused is None
    ids = cpu.tokenizer.encode(PROMPT)
    expected = reference.forward(ids)
    np.testing.assert_allclose(cpu.forward(ids), expected, atol=1e-5 * np.abs(expected).max(), rtol=1e-4)


def test_a_full_cache_is_refused_and_the_model_stays_usable(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    model = load(path, context=12)
    ids = model.tokenizer.encode(PROMPT)[:10]
    cache = model.new_cache()
    model.forward(ids, cache)
    with pytest.raises(EdgecError, match="context full"):
        model.forward([1, 2, 3], cache)
    assert cache.length == 10
    model.forward([1, 2], cache)
    assert cache.length == 12


def test_the_compiled_decoder_checks_its_arguments(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    model = load(path, context=16)
    decoder, cache = model.executor.fused._decoder, model.new_cache()
    x = np.zeros((2, model.config.hidden_size), np.float32)
    logits = np.zeros((1, model.config.vocab_size), np.float32)
    with pytest.raises(ValueError, match="outside the cache"):
        decoder.forward(x, cache.key_array, cache.value_array, 15, logits, False, 0)
    with pytest.raises(ValueError, match="keys has the wrong dtype or shape"):
        decoder.forward(x, cache.key_array[:1], cache.value_array, 0, logits, False, 0)
    with pytest.raises(ValueError, match="logits has the wrong dtype or shape"):
        decoder.forward(x, cache.key_array, cache.value_array, 0, logits, True, 0)
    with pytest.raises(ValueError, match="x has the wrong dtype or shape"):
        decoder.forward(x.astype(np.float64), cache.key_array, cache.value_array, 0, logits, False, 0)
    with pytest.raises(ValueError, match="mode must be"):
        decoder.forward(x, cache.key_array, cache.value_array, 0, logits, False, 2)
    decoder.forward(x, cache.key_array, cache.value_array, 14, logits, False, 0)
    assert np.isfinite(logits).all()


def test_accuracy_int8_needs_the_cpu_backend(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8")
    with pytest.raises(EdgecError, match="needs the cpu backend"):
        load(path, backend="reference", accuracy="int8")
    with pytest.raises(EdgecError, match="unknown accuracy 'fast'"):
        load(path, accuracy="fast")
