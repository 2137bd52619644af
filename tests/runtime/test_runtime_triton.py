"""The `triton` runtime backend end to end on a tiny LLaMA, in Triton's interpreter: the reference backend's tokens."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import PROMPT, export

from edgec.runtime import load
from edgec.runtime.backends import available_backends, make_backend

pytestmark = pytest.mark.skipif(available_backends()["triton"] is not None,
                                reason=f"{available_backends()['triton']}")


@pytest.mark.parametrize("fmt", ["int4:g32", "nf4:g32", "2:4+int4:g32"])
def test_triton_backend_generates_the_reference_tokens(fmt, tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", fmt, include_head=True)
    reference, gpu = load(path, backend="reference"), load(path, backend="triton")
    assert gpu.backend.name == "triton" and gpu.executor.fused is not None  # the pass runs on the device
    ids = reference.tokenizer.encode(PROMPT)
    cache = [reference.new_cache(), gpu.new_cache()]
    expected = reference.forward(ids, cache[0])
    np.testing.assert_allclose(gpu.forward(ids, cache[1]), expected, atol=2e-3 * np.abs(expected).max())  # fp16 prefill
    expected = reference.forward([7], cache[0])
    # decode multiplies in float32, but attends to keys cached by the float16 prefill
    np.testing.assert_allclose(gpu.forward([7], cache[1]), expected, atol=2e-3 * np.abs(expected).max())
    assert list(gpu.generate_ids(ids, 12)) == list(reference.generate_ids(ids, 12))


def test_every_llama_family_variant_runs_on_the_device(family_dir, tmp_path):
    path = export(family_dir, tmp_path / "m.edgec", "int8", include_head=True)
    reference, gpu = load(path, backend="reference"), load(path, backend="triton")
    ids = reference.tokenizer.encode(PROMPT + " of a good fortune")
    assert len(ids) > 8  # past Mistral's window
    cache = [reference.new_cache(), gpu.new_cache()]
    for chunk in (ids[:-2], ids[-2:-1], ids[-1:]):  # a prefill, then cached decode steps
        expected = reference.forward(chunk, cache[0])  # 2e-3: the cached keys carry the prefill's float16 rounding
        np.testing.assert_allclose(gpu.forward(chunk, cache[1]), expected, atol=2e-3 * np.abs(expected).max())


def test_one_decode_step_serves_every_position_through_its_position_buffer(tiny_llama_dir, tmp_path):
    """What a CUDA graph replays: the same step, its input row and position buffers overwritten in place before
    each call (nothing about the position baked in), decodes every token as the reference does."""
    import torch

    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int8", include_head=True)
    reference, gpu = load(path, backend="reference"), load(path, backend="triton")
    fused = gpu.executor.fused
    assert fused.graphs is False  # the interpreter: each token runs the step eagerly
    ids = reference.tokenizer.encode(PROMPT)
    cache = [reference.new_cache(), gpu.new_cache()]
    reference.forward(ids, cache[0])
    gpu.forward(ids, cache[1])
    step = fused._cache(cache[1]).step
    x = torch.zeros((1, gpu.executor.config.hidden_size))
    position = torch.zeros((1,), dtype=torch.int64)
    for token in (7, 11, 3):
        expected = reference.forward([token], cache[0])
        x.copy_(torch.from_numpy(gpu.executor.embed(np.array([token]))))
        position.fill_(cache[1].length)
        got = step(x, position).numpy()
        cache[1].advance(1)
        np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())


def test_phi3_runs_its_steps_on_the_device_kernels(phi3_dir, tmp_path):
    """Phi-3 has no fused device pass: the executor's steps around the Triton linear kernels."""
    path = export(phi3_dir, tmp_path / "m.edgec", "int4:g32", include_head=True)
    reference, gpu = load(path, backend="reference"), load(path, backend="triton")
    assert gpu.executor.fused is None
    ids = reference.tokenizer.encode(PROMPT + " of a good fortune")
    cache = [reference.new_cache(), gpu.new_cache()]
    for chunk in (ids[:-2], ids[-2:-1], ids[-1:]):
        expected = reference.forward(chunk, cache[0])
        np.testing.assert_allclose(gpu.forward(chunk, cache[1]), expected, atol=2e-3 * np.abs(expected).max())


def test_gemma3_runs_its_executor_over_the_device_linears(tiny_gemma3_dir, tmp_path):
    """The triton backend's fused pass is LLaMA's: Gemma 3 runs its numpy executor around the device kernels."""
    path = export(tiny_gemma3_dir, tmp_path / "m.edgec", "int8", include_head=True)
    reference, gpu = load(path, backend="reference"), load(path, backend="triton")
    assert not hasattr(gpu.executor, "fused")
    ids = reference.tokenizer.encode(PROMPT)
    cache = [reference.new_cache(), gpu.new_cache()]
    for chunk in (ids[:-2], ids[-2:-1], ids[-1:]):  # a prefill past the window, then cached decode steps
        expected = reference.forward(chunk, cache[0])
        np.testing.assert_allclose(gpu.forward(chunk, cache[1]), expected, atol=2e-3 * np.abs(expected).max())


def test_auto_never_picks_the_interpreter():
    assert make_backend("auto").name != "triton"


def test_quantized_activations_run_on_the_device(tiny_llama_dir, tmp_path):
    """W8A8 (SmoothQuant): the static activation scale rounds activations on the device, before the weight kernel."""
    from edgec.commands.compression_options import CompressionOptions, run_compression
    from edgec.export_sources import source_from_result
    from edgec.exporters.edgec_export import export_edgec
    from edgec.models.loading import load_model

    loaded = load_model(tiny_llama_dir)
    options = CompressionOptions("int8", None, "smoothquant", None, False, 1, 16, True, 0.01, False, 0.5)
    export_edgec(source_from_result(loaded, run_compression(loaded, options, None).result), tmp_path / "w8a8.edgec")
    reference, gpu = load(tmp_path / "w8a8.edgec", backend="reference"), load(tmp_path / "w8a8.edgec", backend="triton")
    assert gpu.executor.fused is not None and gpu.executor.blocks[0].q.act_scale is not None
    ids = reference.tokenizer.encode(PROMPT)[:12]  # under 16 rows: float32 kernels, so the grids match exactly
    expected = reference.forward(ids)
    np.testing.assert_allclose(gpu.forward(ids), expected, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("act_format", ["fp8", "int8"])
def test_device_projection_quantizes_activations_as_the_host_linear(act_format):
    import torch

    from edgec.core.formats import parse_format
    from edgec.runtime.backends.base import Linear
    from edgec.runtime.backends.triton import TritonBackend
    from edgec.runtime.backends.triton_decoder import _Projection

    fmt, shape = parse_format(act_format), (24, 64)
    rng = np.random.default_rng(0)
    kernel, _ = TritonBackend().kernel(fmt, fmt.quantize(rng.standard_normal(shape).astype(np.float32)), shape)
    host = Linear(kernel, 0, input_scale=np.full(64, 1.5, np.float32), act_scale=0.02, act_format=fmt,
                  bias=np.ones(24, np.float32))
    x = (rng.standard_normal((3, 64)) * 4).astype(np.float32)
    device = _Projection(host, lambda a: None if a is None else torch.from_numpy(np.asarray(a, np.float32)))
    np.testing.assert_allclose(device(torch.from_numpy(x)).numpy(), host(x), rtol=1e-6, atol=1e-6)
