"""The captured decode step on a real GPU (skipped without one): graph replays decode as the eager step does."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import PROMPT, export

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the tests' default; a GPU compiles the kernels


@pytest.mark.parametrize("fmt", ["int4:g32", "int4:g32:asym", "nf4:g32", "fp8", "2:4+int4:g32"])
def test_graph_replays_decode_the_eager_steps_tokens(fmt, tiny_llama_dir, tmp_path, monkeypatch, compiled):
    from edgec.runtime import load

    path = export(tiny_llama_dir, tmp_path / "m.edgec", fmt, include_head=True)
    monkeypatch.setenv("EDGEC_CUDA_GRAPHS", "0")
    eager = load(path, backend="triton")
    monkeypatch.setenv("EDGEC_CUDA_GRAPHS", "1")
    graphed = load(path, backend="triton")
    assert graphed.executor.fused.graphs and not eager.executor.fused.graphs
    ids = eager.tokenizer.encode(PROMPT)
    caches = [eager.new_cache(), graphed.new_cache()]
    for model, cache in zip((eager, graphed), caches):
        model.forward(ids, cache)
    for token in (7, 11, 3, 5, 9):  # the first decode runs eagerly and captures; the rest replay
        expected = eager.forward([token], caches[0])
        got = graphed.forward([token], caches[1])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert graphed.executor.fused._cache(caches[1]).captured.graph is not None
    assert list(graphed.generate_ids(ids, 16)) == list(eager.generate_ids(ids, 16))
