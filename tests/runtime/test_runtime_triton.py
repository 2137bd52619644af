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
    assert gpu.backend.name == "triton"
    ids = reference.tokenizer.encode(PROMPT)
    cache = [reference.new_cache(), gpu.new_cache()]
    expected = reference.forward(ids, cache[0])
    np.testing.assert_allclose(gpu.forward(ids, cache[1]), expected, atol=2e-3 * np.abs(expected).max())  # fp16 prefill
    expected = reference.forward([7], cache[0])
    np.testing.assert_allclose(gpu.forward([7], cache[1]), expected, atol=1e-4 * np.abs(expected).max())  # fp32 decode
    assert list(gpu.generate_ids(ids, 12)) == list(reference.generate_ids(ids, 12))


def test_auto_never_picks_the_interpreter():
    assert make_backend("auto").name != "triton"
