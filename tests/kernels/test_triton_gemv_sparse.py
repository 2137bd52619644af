"""The 2:4 kernels (edgec.kernels.triton.gemv_sparse, gemm_sparse) and the 2:4 word layout
(word_layout.sparse_interleave) in Triton's interpreter, against the format library's numpy reference; the int4
decode loop in the SASS for sm_89/sm_90."""

from __future__ import annotations

import numpy as np
import pytest
from compiled_loops import loop_opcodes

from edgec.core.formats import parse_format
from edgec.kernels import triton as tk
from edgec.kernels.triton.word_layout import sparse_interleave

pytestmark = pytest.mark.skipif(not tk.available(), reason=f"{tk.unavailable_reason()}")

if tk.available():
    import triton
    import triton.language as tl

    from edgec.kernels.triton.gemv_sparse import permute_bytes, selectors

    @triton.jit
    def _permute_of(low_ptr, high_ptr, meta_ptr, out_ptr):
        i = tl.arange(0, 64)
        chosen = selectors(tl.load(meta_ptr + i))
        for vector in tl.static_range(2):
            tl.store(out_ptr + 2 * i + vector, permute_bytes(tl.load(low_ptr + 2 * i + vector),
                                                             tl.load(high_ptr + 2 * i + vector),
                                                             chosen >> (16 * vector), False))


def _sparse(shape, name="2:4+int4:g128", seed=0):
    fmt = parse_format(name)
    rng = np.random.default_rng(seed)
    packed = fmt.quantize(rng.standard_normal(shape).astype(np.float32) * 0.05)
    return fmt, packed


def test_each_group_s_w_plus_i_sits_in_word_i():
    """Group s·W + i of a chunk: its kept codes in nibbles 2(2(s % 2) + kept) + s // 2 of word i, its position
    nibble at nibble s of word i's meta half-word."""
    k, words = 256, 16
    codes = np.random.default_rng(1).integers(0, 16, (3, k // 2)).astype(np.uint8)
    nibbles = np.random.default_rng(2).integers(0, 16, (3, k // 4)).astype(np.uint8)
    packed, meta = sparse_interleave(codes[:, 0::2] | (codes[:, 1::2] << 4), nibbles[:, 0::2] | (nibbles[:, 1::2] << 4),
                                     k, words)
    assert packed.shape == (3, k // 16) and meta.shape == (3, k // 16)
    for slot in range(4):
        for i in range(words):
            group = slot * words + i
            assert (meta[2, i] >> (4 * slot)) & 15 == nibbles[2, group]
            for kept in range(2):
                nibble = 2 * (2 * (slot % 2) + kept) + slot // 2
                assert (packed[2, i] >> (4 * nibble)) & 15 == codes[2, 2 * group + kept]


def test_the_selectors_pick_each_byte_vectors_inputs():
    """`selectors` and `permute_bytes` (the interpreter's PRMT): byte vector v of a word meets, in bytes 0-1, the
    inputs at the kept positions of its group 2v and, in bytes 2-3, those of group 2v + 1."""
    import torch

    rng = np.random.default_rng(3)
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    positions = np.array([[pairs[rng.integers(6)] for _ in range(4)] for _ in range(64)])  # [element, slot, kept]
    meta = (positions[:, :, 0] | (positions[:, :, 1] << 2)) << (4 * np.arange(4))
    low = rng.integers(0, 256, (64, 2, 4), dtype=np.uint8)  # [element, vector, byte]: the inputs of group 2v
    high = rng.integers(0, 256, (64, 2, 4), dtype=np.uint8)  # those of group 2v + 1
    out = torch.zeros(128, dtype=torch.int32)
    _permute_of[(1,)](torch.from_numpy(low.view(np.int32).ravel()), torch.from_numpy(high.view(np.int32).ravel()),
                      torch.from_numpy(meta.sum(axis=1).astype(np.int32)), out)
    got = out.numpy().view(np.uint8).reshape(64, 2, 4)
    for e in range(64):
        for v in range(2):
            expected = [low[e, v, positions[e, 2 * v, 0]], low[e, v, positions[e, 2 * v, 1]],
                        high[e, v, positions[e, 2 * v + 1, 0]], high[e, v, positions[e, 2 * v + 1, 1]]]
            assert list(got[e, v]) == expected


@pytest.mark.parametrize("name,shape,words", [("2:4+int4:g128", (70, 512), 16), ("2:4+int4:g64", (37, 256), 8),
                                              ("2:4+int4:g32", (20, 512), 0), ("2:4+int4:g128:asym", (20, 512), 0)])
def test_2_4_int4_weights_match_the_reference_in_decode_and_prefill(name, shape, words):
    """Symmetric int4 in groups of 64 kept values or more takes the 2:4 word layout (decode through `gemv_sparse`,
    prefill through the byte-layout GEMM reading it); groups of 32 (4-word chunks) and asymmetric codes keep the
    stored layout."""
    import torch

    fmt, packed = _sparse(shape, name)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    assert weight.words == words
    rng = np.random.default_rng(4)
    for m in (1, 3, 20):
        x = rng.standard_normal((m, shape[1])).astype(np.float32)
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        tol = 1e-5 if m < 16 else 2e-3
        assert (np.abs(got - x @ w.T) <= tol * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), (name, m)


@pytest.mark.parametrize("config", range(9))
def test_every_sparse_decode_configuration_matches_the_reference(config):
    """Each autotune configuration, launched directly: 4 chunks split 4 or 16 ways leave splits empty, 70 rows a
    partial block."""
    import torch

    from edgec.kernels.triton.gemv_ints import split_chunks
    from edgec.kernels.triton.gemv_sparse import GEMV_SPARSE_BLOCKS, _gemv_sparse_kernel
    from edgec.kernels.triton.gemv_words import GEMV_WORD_SPLITS

    block_n, warps = GEMV_SPARSE_BLOCKS[config // len(GEMV_WORD_SPLITS)]
    split = GEMV_WORD_SPLITS[config % len(GEMV_WORD_SPLITS)]
    fmt, packed = _sparse((70, 1024), seed=config)
    w = fmt.dequantize(packed, (70, 1024))
    weight = tk.prepare(fmt, packed, (70, 1024))
    x = np.random.default_rng(config).standard_normal((2, 1024)).astype(np.float32)
    xt = torch.from_numpy(x)
    out = torch.zeros((2, 70), dtype=torch.float32)
    planes, _, factors, _ = split_chunks(weight, xt)
    grid = (triton.cdiv(70, block_n), 2, split)
    _gemv_sparse_kernel[grid](planes, factors, out, weight.q_words, weight.meta.view(torch.int16), weight.scale, 70,
                              1024, out.stride(0), weight.q_words.shape[1], weight.ng, WORDS=weight.words,
                              GROUP_STEPS=weight.group_steps, DP4A=False, BLOCK_N=block_n, SPLIT_K=split,
                              num_warps=warps)
    assert (np.abs(out.numpy() - x @ w.T) <= 1e-5 * (np.abs(x) @ np.abs(w).T)).all()


@pytest.mark.parametrize("name", ["2:4", "2:4+bf16"])
@pytest.mark.parametrize("config", range(9))
def test_every_16_bit_sparse_decode_configuration_matches_the_reference(config, name):
    """2:4 fp16 and bf16 values as stored, each autotune configuration launched directly (K = 176: 11 chunks of
    four groups, split 4 or 16 ways; 70 rows, a partial block)."""
    import torch

    from edgec.kernels.triton.gemv_sparse import GEMV_SPARSE_FLOAT_BLOCKS, _gemv_sparse_floats_kernel, sparse_float_words
    from edgec.kernels.triton.gemv_words import GEMV_WORD_SPLITS

    block_n, warps = GEMV_SPARSE_FLOAT_BLOCKS[config // len(GEMV_WORD_SPLITS)]
    split = GEMV_WORD_SPLITS[config % len(GEMV_WORD_SPLITS)]
    fmt, packed = _sparse((70, 176), name, seed=config)
    w = fmt.dequantize(packed, (70, 176))
    weight = tk.prepare(fmt, packed, (70, 176))
    x = np.random.default_rng(config).standard_normal((3, 176)).astype(np.float32)
    out = torch.zeros((3, 70), dtype=torch.float32)
    assert sparse_float_words(176) == 4
    _gemv_sparse_floats_kernel[(triton.cdiv(70, block_n), 3, split)](
        torch.from_numpy(x), out, weight.q.view(torch.int32), weight.meta, 70, 176, 176, out.stride(0), 44,
        weight.meta.shape[1], KIND=weight.kind, WORDS=4, BLOCK_N=block_n, SPLIT_K=split, num_warps=warps)
    assert (np.abs(out.numpy() - x @ w.T) <= 1e-5 * (np.abs(x) @ np.abs(w).T)).all()


@pytest.mark.parametrize("name", ["2:4", "2:4+bf16"])
@pytest.mark.parametrize("shape", [(37, 512), (20, 52)], ids=str)
def test_16_bit_sparse_weights_match_the_reference_through_linear(name, shape):
    """Through `linear`: decode (M = 1, 3) by `gemv_sparse_floats` where K is a multiple of 16, by the byte-layout
    GEMV otherwise (K = 52); prefill (M = 20) by the byte-layout GEMM."""
    import torch

    fmt, packed = _sparse(shape, name)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    assert weight.words == 0  # as stored
    for m in (1, 3, 20):
        x = np.random.default_rng(m).standard_normal((m, shape[1])).astype(np.float32)
        tol = 1e-5 if m < 16 else 2e-3
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        assert (np.abs(got - x @ w.T) <= tol * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), m


@pytest.mark.parametrize("name", ["2:4+int4:g128", "2:4", "2:4+bf16"])
@pytest.mark.parametrize("config", range(3))
def test_every_sparse_prefill_configuration_matches_the_reference(config, name):
    """`_gemm_sparse`, each configuration launched directly on 40 x rows and 70 weight rows (partial blocks)."""
    import torch

    from edgec.kernels.triton.gemm_sparse import GEMM_SPARSE_BLOCKS, _gemm_sparse, gemm_sparse_fits

    block_m, block_n, warps, _ = GEMM_SPARSE_BLOCKS[config]
    fmt, packed = _sparse((70, 512), name, seed=config)
    w = fmt.dequantize(packed, (70, 512))
    weight = tk.prepare(fmt, packed, (70, 512))
    assert gemm_sparse_fits(weight)
    x = np.random.default_rng(config).standard_normal((40, 512)).astype(np.float32)
    out = torch.zeros((40, 70), dtype=torch.float32)
    q = weight.q_words if weight.words else weight.q.view(torch.int32)
    meta = weight.meta.view(torch.int16) if weight.words else weight.meta
    _gemm_sparse.fn[(triton.cdiv(40, block_m), triton.cdiv(70, block_n))](
        torch.from_numpy(x), out, q, meta, weight.scale, 40, 70, 512, 512, out.stride(0), q.shape[1], meta.shape[1],
        weight.ng, KIND=weight.kind, WORDS=weight.words, GROUP_STEPS=weight.group_steps, BLOCK_M=block_m,
        BLOCK_N=block_n, num_warps=warps)
    assert (np.abs(out.numpy() - x @ w.T) <= 2e-3 * (np.abs(x) @ np.abs(w).T)).all()


def test_the_compiled_loop_takes_one_permute_and_one_dp4a_per_four_codes_and_plane():
    """On a GPU `permute_bytes` is the PRMT and `dot4` the DP4A: the 2:4 GEMV's main loop, compiled for sm_89 and
    sm_90, issues 6 IDP and at least 6 PRMT per word of 8 kept codes."""
    counts = loop_opcodes("int4", True, "_gemv_sparse", ("IDP", "PRMT"))
    assert sorted(counts) == [89, 90]
    for words, idp, prmt in counts.values():
        assert idp == 6 * words and prmt >= 6 * words
