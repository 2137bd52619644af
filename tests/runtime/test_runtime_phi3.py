"""Phi-3 in the runtime: the reference and cpu backends against transformers on tiny models (full rotary
with a sliding window shorter than the prompt; rotary on half of each head), prefill and cached decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from runtime_helpers import PROMPT, export, transformers_twin

from edgec.commands.compression_options import CompressionOptions, run_compression
from edgec.core.errors import ContainerError
from edgec.export_sources import source_from_result
from edgec.exporters.edgec_export import export_edgec
from edgec.models.loading import load_model
from edgec.runtime import load
from edgec.runtime.backends import available_backends
from edgec.runtime.model_config import model_config
from edgec.runtime.rope import Rotary

BACKENDS = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(available_backends()["cpu"] is not None,
                                                                      reason="the CPU kernels were not built"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt", [None, "int4:g32"])
def test_phi3_matches_transformers_prefill_and_cached_steps(phi3_dir, fmt, backend, tmp_path):
    path = export(phi3_dir, tmp_path / "m.edgec", fmt, include_head=fmt is not None)
    model = load(path, backend=backend)
    assert model.executor.fused is None  # the fused passes compute LLaMA's separate projections
    ids = model.tokenizer.encode(PROMPT + " of a good fortune")
    assert len(ids) > 8  # past the window of the variant that has one
    with torch.no_grad():
        expected = transformers_twin(phi3_dir, path)(torch.tensor([ids])).logits[0].numpy()
    tol = dict(atol=2e-5 * np.abs(expected).max(), rtol=1e-4)
    np.testing.assert_allclose(model.forward(ids), expected, **tol)
    cache = model.new_cache()
    steps = [model.forward(ids[:5], cache)] + [model.forward([i], cache) for i in ids[5:]]
    np.testing.assert_allclose(np.concatenate(steps), expected, **tol)


def test_phi3_greedy_generation_matches_transformers(tiny_phi3_dir, tmp_path):
    path = export(tiny_phi3_dir, tmp_path / "m.edgec", "int8", include_head=True)
    model, twin = load(path, backend="reference"), transformers_twin(tiny_phi3_dir, path)
    ids = model.tokenizer.encode(PROMPT)
    with torch.no_grad():
        out = twin.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert list(model.generate_ids(ids, max_new_tokens=12)) == out[0, len(ids):].tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_phi3_w8a8_matches_the_compressed_torch_model(tiny_phi3_dir, backend, tmp_path):
    """SmoothQuant int8 with int8 activations: folded scales and activation scales on the fused projections."""
    loaded = load_model(tiny_phi3_dir)
    options = CompressionOptions("int8", None, "smoothquant", None, False, 1, 16, True, 0.01, False, 0.5)
    export_edgec(source_from_result(loaded, run_compression(loaded, options, None).result), tmp_path / "w8a8.edgec")
    model = load(tmp_path / "w8a8.edgec", backend=backend)
    ids = model.tokenizer.encode(PROMPT)
    reference = load(tmp_path / "w8a8.edgec", backend="reference").forward(ids)
    np.testing.assert_allclose(model.forward(ids), reference, atol=1e-5 * np.abs(reference).max(), rtol=1e-4)
    with torch.no_grad():
        expected = loaded.model(torch.tensor([ids])).logits[0].numpy()  # the compressed model, activations in int8
    # float32 sums in another order can move an activation code by one: up to ~1e-2 of the largest logit
    assert np.abs(reference - expected).max() < 1e-2 * np.abs(expected).max()


def test_length_dependent_rope_is_refused(tiny_phi3_dir):
    """longrope switches frequencies at a length (and HF recomputes the cache there): not run."""
    config = json.loads((tiny_phi3_dir / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                 "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}
    with pytest.raises(ContainerError, match="'longrope' is not supported.*change with the sequence length"):
        Rotary(model_config("phi3", config), 16)


def test_a_partial_rotary_factor_outside_0_1_is_refused(tiny_phi3_dir):
    config = json.loads((tiny_phi3_dir / "config.json").read_text())
    config["rope_parameters"]["partial_rotary_factor"] = 1.5
    with pytest.raises(ContainerError, match="partial_rotary_factor must be a number in"):
        model_config("phi3", config)


def test_a_config_written_before_transformers_5_keeps_its_partial_rotary_factor(tiny_phi3_dir):
    """Phi-4-mini's config.json keeps rope_theta and partial_rotary_factor at the top level."""
    config = json.loads((tiny_phi3_dir / "config.json").read_text())
    del config["rope_parameters"]
    config.update(rope_theta=5000.0, partial_rotary_factor=0.75)
    parsed = model_config("phi3", config)
    assert parsed.rope == {"rope_theta": 5000.0, "rope_type": "default", "partial_rotary_factor": 0.75}
    assert Rotary(parsed, 4).dims == 12  # of a head of 16
