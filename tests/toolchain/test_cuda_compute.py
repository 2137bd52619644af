"""The toolchain computing on a CUDA GPU gives the CPU's results (runs only where torch sees a GPU).

Statistics accumulate on the GPU in another order than on the CPU, so float32 sums differ in
their last bits: GPTQ codes may flip on a rare tie, and losses agree to a relative 1e-3.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgec.compress import CalibrationSettings, compress
from edgec.core.formats import parse_format
from edgec.evaluation.run import EvalSettings, evaluate
from edgec.models.loading import load_model
from edgec.passes import LayerConfig, configured_passes
from edgec.planner.sensitivity import SensitivitySettings, measure_sensitivity
from edgec.planner.units import planning_units, unit_candidates

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_compression_on_the_gpu_matches_the_cpu_and_leaves_the_weights_on_the_host(tiny_llama_dir, method):
    results = {}
    for device in (CPU, GPU):
        loaded = load_model(tiny_llama_dir)
        request = {r.name: LayerConfig(parse_format("int4:g32"), method) for r in loaded.adapter.linears(loaded.model)}
        passes = configured_passes(damp=0.01, act_order=True, clip=True, alpha=0.5)
        results[device.type] = compress(loaded, request, CalibrationSettings(samples=4, seq_len=32), passes,
                                        progress=False, device=device)
        assert all(p.device == CPU for p in loaded.model.parameters())
    for name, layer in results["cpu"].layers.items():
        for buffer, array in layer.packed.items():
            other = results["cuda"].layers[name].packed[buffer]
            if np.issubdtype(array.dtype, np.integer):  # codes, and scales stored as bits
                assert np.mean(array != other) < 0.01, f"{name}::{buffer}"
            else:
                np.testing.assert_allclose(other, array, rtol=1e-3, err_msg=f"{name}::{buffer}")


def test_sensitivity_on_the_gpu_matches_the_cpu(tiny_llama_dir):
    tables = []
    for device in (CPU, GPU):
        loaded = load_model(tiny_llama_dir)
        units = planning_units(loaded)
        candidates = {u.label: unit_candidates(u, [parse_format("int4:g32")], "rtn") for u in units}
        settings = SensitivitySettings(samples=2, seq_len=32, loss_samples=1, loss_seq_len=32)
        tables.append(measure_sensitivity(loaded, units, candidates, settings, cache=None, progress=False, device=device))
    for key, errors in tables[0].errors.items():
        np.testing.assert_allclose(tables[1].errors[key].loss, errors.loss, rtol=1e-3, atol=1e-7, err_msg=str(key))


def test_perplexity_on_the_gpu_is_within_half_a_percent_of_the_cpu(tiny_llama_dir):
    reports = [evaluate(load_model(tiny_llama_dir), EvalSettings(format="int4:g32", max_tokens=1024, seq_len=128,
                                                                 progress=False, device=device))
               for device in (CPU, GPU)]
    cpu, gpu = (r.lm for r in reports)
    assert abs(gpu.perplexity_original / cpu.perplexity_original - 1) < 0.005
    assert abs(gpu.perplexity_compressed / cpu.perplexity_compressed - 1) < 0.005
