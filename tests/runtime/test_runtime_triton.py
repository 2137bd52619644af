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


def test_auto_never_picks_the_interpreter():
    assert make_backend("auto").name != "triton"
