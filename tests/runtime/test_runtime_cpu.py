"""The `cpu` backend against the `reference` backend, end to end on tiny models in every format family."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import PROMPT, export

from edgec.kernels.triton import gpu_present
from edgec.runtime import load
from edgec.runtime.backends import available_backends

pytestmark = pytest.mark.skipif(available_backends()["cpu"] is not None, reason="the CPU kernels were not built")

FORMATS = [None, "bf16", "int8", "int4:g32", "int4:g64:asym", "int3:g32", "int2:g32", "nf4:g32", "fp8", "2:4",
           "2:4+int4:g32", "2:4+int8"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_cpu_backend_matches_reference(fmt, tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", fmt, include_head=fmt is not None)
    reference, cpu = load(path, backend="reference"), load(path, backend="cpu")
    ids = reference.tokenizer.encode(PROMPT)
    expected = reference.forward(ids)
    np.testing.assert_allclose(cpu.forward(ids), expected, atol=1e-5 * np.abs(expected).max(), rtol=1e-4)
    assert list(cpu.generate_ids(ids, 12)) == list(reference.generate_ids(ids, 12))
    assert cpu.weights.nbytes < reference.weights.nbytes / 2  # no float copy of the weights


def test_auto_picks_the_cpu_backend(tiny_llama_dir, tmp_path):
    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int4:g32")
    assert load(path).backend.name == "cpu"


@pytest.mark.skipif(gpu_present(),
                    reason="a GPU is present: auto picks the triton backend, which uses torch")
def test_running_a_model_imports_neither_torch_nor_triton(tiny_llama_dir, tmp_path):
    """The runtime an app embeds stays light: choosing a backend must not import torch to look for a GPU."""
    import os
    import subprocess
    import sys

    path = export(tiny_llama_dir, tmp_path / "m.edgec", "int4:g32")
    code = ("import sys\nfrom edgec.runtime import load\nm = load(sys.argv[1])\nm.forward([1, 2, 3])\n"
            "print(m.backend.name, sorted(k for k in ('torch', 'triton', 'transformers') if k in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cpu", "[]"]
