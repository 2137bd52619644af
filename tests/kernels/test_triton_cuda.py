"""The decode GEMVs' inline-PTX paths on a real GPU (skipped without one): the interpreter runs their `tl.load`
twins, so only a GPU checks the PTX itself against the format library's numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.core.formats import parse_format

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the tests' default; a GPU compiles the kernels


@pytest.mark.parametrize("fmt", ["nf4:g32", "nf4:g64", "nf4:g128"])
def test_nf4_decode_matches_the_reference_on_a_gpu(fmt, compiled):
    """nf4's word-layout GEMV as compiled (its table loads through PRMT-formed addresses and its group scales by
    `ld.global.nc`, inline PTX), at every block size the autotuner tries."""
    import triton

    from edgec.kernels.triton.gemv_words import _gemv_words_kernel, gemv_word_configs, rows_for_chunk
    from edgec.kernels.triton.matmul import gemv_words_operands
    from edgec.kernels.triton.weights import prepare

    fmt = parse_format(fmt)
    n, k = 300, 4096
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((n, k)).astype(np.float32) * 0.05
    packed = fmt.quantize(w0)
    w = fmt.dequantize(packed, (n, k))
    weight = prepare(fmt, packed, (n, k), device="cuda")
    x = rng.standard_normal((2, k)).astype(np.float32)
    want = x @ w.T
    for config in rows_for_chunk(gemv_word_configs(), WORDS=weight.words):
        out = torch.zeros((2, n), dtype=torch.float32, device="cuda")
        args, flags = gemv_words_operands(weight, torch.from_numpy(x).cuda(), out)
        rows, split = config.kwargs["BLOCK_N"], config.kwargs["SPLIT_K"]
        _gemv_words_kernel[(triton.cdiv(n, rows), 2, split)](*args, **flags, BLOCK_N=rows, SPLIT_K=split,
                                                              num_warps=config.num_warps)
        got = out.cpu().numpy()
        assert (np.abs(got - want) <= 1e-5 * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), (str(fmt), config)
