"""The runtime's reference and cpu backends on the default model against transformers. Slow."""

import numpy as np
import pytest
import torch
from runtime_helpers import PROMPT, export, transformers_twin

from edgec.runtime import load
from edgec.runtime.backends import available_backends

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", [None, "int8"])
def test_default_model_greedy_32_tokens_match_transformers(fmt, tmp_path):
    path = export(None, tmp_path / "smollm2.edgec", fmt, include_head=fmt is not None)
    twin = transformers_twin(None, path)
    backends = ["reference"] + (["cpu"] if available_backends()["cpu"] is None else [])
    ids = load(path, backend="reference").tokenizer.encode(PROMPT)
    with torch.no_grad():
        expected = twin(torch.tensor([ids])).logits[0].numpy()
        reference = twin.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)[0, len(ids):].tolist()
    for backend in backends:  # cpu: the fused C pass
        model = load(path, backend=backend)
        np.testing.assert_allclose(model.forward(ids), expected, atol=1e-4 * np.abs(expected).max())
        assert list(model.generate_ids(ids, 32)) == reference, backend


def test_minilm_sentence_embeddings_match_transformers(tmp_path):
    path = export("minilm", tmp_path / "minilm.edgec", "int8")
    twin = transformers_twin("minilm", path)
    model = load(path, backend="reference")
    texts = [PROMPT, "She was the youngest of the two daughters of a most affectionate, indulgent father."]
    for text, row in zip(texts, model.embed(texts)):
        with torch.no_grad():
            pooled = twin(torch.tensor([model.tokenizer.encode(text)])).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(row, (pooled / pooled.norm()).numpy(), atol=1e-5)
