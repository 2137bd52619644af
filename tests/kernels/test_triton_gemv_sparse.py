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

    from edgec.kernels.triton.gemv_sparse import permute_bytes, slot_positions, vector_selector

    @triton.jit
    def _permute_of(meta_ptr, out_ptr, positions_ptr, VECTORS: tl.constexpr, WORDS: tl.constexpr):
        i = tl.arange(0, WORDS)
        meta = tl.load(meta_ptr + i)
        for vector in tl.static_range(VECTORS):
            tl.store(out_ptr + VECTORS * i + vector, permute_bytes(tl.full((WORDS,), 0x03020100, tl.int32),
                                                                   tl.full((WORDS,), 0x07060504, tl.int32),
                                                                   vector_selector(meta, vector, VECTORS), False))
        for slot in tl.static_range(2 * VECTORS):
            first, second = slot_positions(meta, slot, VECTORS)
            tl.store(positions_ptr + 4 * VECTORS * i + 2 * slot, first)
            tl.store(positions_ptr + 4 * VECTORS * i + 2 * slot + 1, second)


def _sparse(shape, name="2:4+int4:g128", seed=0):
    fmt = parse_format(name)
    rng = np.random.default_rng(seed)
    packed = fmt.quantize(rng.standard_normal(shape).astype(np.float32) * 0.05)
    return fmt, packed


def _positions_at(meta_word: int, slot: int, bits: int) -> tuple[int, int]:
    """Where `word_layout.sparse_interleave` puts slot `slot`'s kept positions (i0, i1) in a meta word, by its
    docstring."""
    vector, h = divmod(slot, 2)
    first = 2 * h if bits == 8 else 16 * (vector // 2) + 2 * (vector % 2) + 8 * h
    return (meta_word >> first) & 3, (meta_word >> (first + 4)) & 3


def _interleaved(bits, words, symmetric, k=512, rows=3):
    """Random kept codes and positions, and them in the 2:4 word layout."""
    from edgec.core.formats.bitpack import pack_bits

    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, (rows, k // 2)).astype(np.uint8)
    pairs = np.array([(a, b) for a in range(4) for b in range(a + 1, 4)])[rng.integers(0, 6, (rows, k // 4))]
    nibbles = (pairs[..., 0] | (pairs[..., 1] << 2)).astype(np.uint8)
    packed, meta = sparse_interleave(pack_bits(codes, bits), nibbles[:, 0::2] | (nibbles[:, 1::2] << 4), k, words,
                                     bits, symmetric)
    return codes, pairs, packed, meta


@pytest.mark.parametrize("bits,words,symmetric", [(8, 16, True), (4, 16, True), (4, 8, False), (3, 16, True),
                                                  (3, 8, False), (2, 8, True), (2, 4, False)])
def test_each_group_s_w_plus_i_sits_in_word_i(bits, words, symmetric):
    """Group s·W + i of a chunk: its kept codes at bits 8(2(s % 2) + kept) + B·(s // 2) of word i (3-bit codes as
    the 4-bit codes of the same value, symmetric codes below 8 bits as c ^ 2^(B−1)), its positions in word i's meta
    word (8, 16 or 32 bits for 8-, 4- and 2-bit codes) where the permute's selector wants them."""
    k = 512
    codes, pairs, packed, meta = _interleaved(bits, words, symmetric, k)
    if bits == 3:
        codes, bits = codes + (4 if symmetric else 0), 4
    slots = 16 // bits
    assert packed.shape == (3, k * bits // 64) and meta.shape == packed.shape and meta.itemsize == slots // 2
    flip = 1 << (bits - 1) if symmetric and bits < 8 else 0
    chunk_groups = slots * words
    for chunk in range(k // (4 * chunk_groups)):
        for slot in range(slots):
            for i in range(words):
                word, group = chunk * words + i, chunk * chunk_groups + slot * words + i
                assert _positions_at(int(meta[2, word]), slot, bits) == tuple(pairs[2, group])
                for kept in range(2):
                    at = 8 * (2 * (slot % 2) + kept) + bits * (slot // 2)
                    assert (int(packed[2, word]) >> at) & ((1 << bits) - 1) == codes[2, 2 * group + kept] ^ flip


@pytest.mark.parametrize("bits,k,group,words", [(8, 4096, None, 16), (4, 4096, 128, 16), (4, 512, 32, 4),
                                                (2, 4096, 64, 4), (2, 4096, 128, 8), (4, 576, 32, 4),
                                                (4, 576, 128, 4), (8, 576, None, 8), (2, 576, 128, None),
                                                (4, 544, 128, None), (2, 256, 16, None)])
def test_the_2_4_chunk_is_the_widest_that_divides_k_and_the_group(bits, k, group, words):
    """`sparse_chunk_words`: 16, 8 or 4 words of 4·(16/bits) groups, within K and the scale group; None when K is not
    a multiple of 32·(8/bits) (rows of code words would not start 16-byte aligned) or no chunk fits the group."""
    from edgec.kernels.triton.word_layout import sparse_chunk_words

    assert sparse_chunk_words(k, group, bits) == words


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_the_selectors_pick_each_byte_vectors_inputs(bits):
    """`vector_selector` and `permute_bytes` (the interpreter's PRMT) over meta words of the 2:4 word layout: byte
    vector v of a word meets, in bytes 0-1, the inputs at the kept positions of its group 2v and, in bytes 2-3,
    those of group 2v + 1 (here the inputs are their own indices 0-3 and 4-7); `slot_positions` reads the same."""
    import torch

    _, pairs, _, meta = _interleaved(bits, 4, True, k=256, rows=1)
    words, slots = meta.shape[1], 16 // bits
    selected = torch.zeros((words, slots // 2), dtype=torch.int32)
    positions = torch.zeros((words, slots, 2), dtype=torch.int32)
    _permute_of[(1,)](torch.from_numpy(meta[0].astype(np.int64).astype(np.int32)), selected, positions, VECTORS=slots // 2,
                      WORDS=words)
    got = selected.numpy().view(np.uint8).reshape(words, slots // 2, 4)
    for word in range(words):
        chunk, i = divmod(word, 4)
        for vector in range(slots // 2):
            first, second = (pairs[0, chunk * 4 * slots + (2 * vector + h) * 4 + i] for h in (0, 1))
            assert list(got[word, vector]) == [first[0], first[1], 4 + second[0], 4 + second[1]], (word, vector)
            assert positions[word, 2 * vector].tolist() == list(first)
            assert positions[word, 2 * vector + 1].tolist() == list(second)


WORD_LAYOUT_CASES = [("2:4+int4:g128", (70, 512), 16), ("2:4+int4:g64", (37, 256), 8), ("2:4+int4:g32", (20, 512), 4),
                     ("2:4+int4:g128:asym", (20, 512), 16), ("2:4+int8", (37, 384), 16), ("2:4+int2:g64", (20, 512), 4),
                     ("2:4+int2:g128:asym", (20, 1024), 8), ("2:4+int3:g128", (20, 512), 16),
                     ("2:4+int3:g64:asym", (37, 512), 8), ("2:4+int4:g128", (20, 200), 0),
                     ("2:4+int4:g128", (20, 576), 4), ("2:4+int8", (20, 576), 8), ("2:4+int2:g128", (20, 576), 0)]


@pytest.mark.parametrize("name,shape,words", WORD_LAYOUT_CASES, ids=[f"{c[0]}-{c[1][1]}" for c in WORD_LAYOUT_CASES])
def test_2_4_integer_weights_match_the_reference_in_decode_and_prefill(name, shape, words):
    """2:4 over int8, int4, int3 (as int4 codes) and int2, symmetric or not, takes the 2:4 word layout where K is a
    multiple of 32·(8/bits) and a chunk fits the group (SmolLM2's K = 576 at int8 and int4, not at int2): decode
    through `gemv_sparse`, prefill through `_gemm_sparse`; other K keep the stored layout and the byte-layout
    kernels."""
    import torch

    fmt, packed = _sparse(shape, name)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    assert weight.words == words
    rng = np.random.default_rng(4)
    for m in (1, 3, 20):
        x = rng.standard_normal((m, shape[1])).astype(np.float32)
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        tol = (6e-5 if weight.asym else 1e-5) if m < 16 else 2e-3
        assert (np.abs(got - x @ w.T) <= tol * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), (name, m)


def _launch_sparse_gemv(weight, x, block_n, split, warps):
    """`_gemv_sparse_kernel` launched directly, in the interpreter (DP4A False): y (M, N) as numpy."""
    import torch

    from edgec.kernels.triton.gemv_ints import split_chunks
    from edgec.kernels.triton.gemv_sparse import _gemv_sparse_kernel

    (n, k), m = weight.shape, x.shape[0]
    out = torch.zeros((m, n), dtype=torch.float32)
    planes, _, factors, _ = split_chunks(weight, torch.from_numpy(x))
    _gemv_sparse_kernel[(triton.cdiv(n, block_n), m, split)](
        planes, factors, out, weight.q_words, weight.meta_words, weight.scale, weight.minv, n, k, out.stride(0),
        weight.q_words.shape[1], weight.ng, BITS=weight.bits, ASYM=weight.asym, WORDS=weight.words,
        GROUP_STEPS=weight.group_steps, DP4A=False, BLOCK_N=block_n, SPLIT_K=split, num_warps=warps)
    return out.numpy()


@pytest.mark.parametrize("config", range(9))
def test_every_sparse_decode_configuration_matches_the_reference(config):
    """Each autotune configuration, launched directly: 4 chunks split 4 or 16 ways leave splits empty, 70 rows a
    partial block."""
    from edgec.kernels.triton.gemv_sparse import GEMV_SPARSE_BLOCKS
    from edgec.kernels.triton.gemv_words import GEMV_WORD_SPLITS

    block_n, warps = GEMV_SPARSE_BLOCKS[config // len(GEMV_WORD_SPLITS)]
    split = GEMV_WORD_SPLITS[config % len(GEMV_WORD_SPLITS)]
    fmt, packed = _sparse((70, 1024), seed=config)
    w = fmt.dequantize(packed, (70, 1024))
    weight = tk.prepare(fmt, packed, (70, 1024))
    x = np.random.default_rng(config).standard_normal((2, 1024)).astype(np.float32)
    got = _launch_sparse_gemv(weight, x, block_n, split, warps)
    assert (np.abs(got - x @ w.T) <= 1e-5 * (np.abs(x) @ np.abs(w).T)).all()


@pytest.mark.parametrize("name", ["2:4+int8", "2:4+int4:g64:asym", "2:4+int2:g128", "2:4+int2:g64:asym"])
def test_the_sparse_decode_holds_at_extreme_codes_and_inputs(name):
    """Codes at both ends of their range, inputs from 1e-6 to 1e4 in one row and all at the chunk's largest in
    another: the integer products stay exact (int8's top plane joins in float32, where a0·65536 would overflow
    int32)."""
    fmt, packed = _sparse((16, 1024), name, seed=9)
    rng = np.random.default_rng(9)
    q = packed["values.qdata"]
    low, high = (-128, 127) if q.dtype == np.int8 else (0, 255)  # every packed code at its least or its largest
    pick = rng.random(q.shape)
    packed["values.qdata"] = np.where(pick < 0.3, q, np.where(pick < 0.65, low, high)).astype(q.dtype)
    w = fmt.dequantize(packed, (16, 1024))
    weight = tk.prepare(fmt, packed, (16, 1024))
    assert weight.words
    x = (rng.standard_normal((3, 1024)) * 10.0 ** rng.integers(-6, 5, (3, 1024))).astype(np.float32)
    x[2] = -1.9  # every input near its chunk's largest: four -128 codes make a0 = 4·128·122
    got = _launch_sparse_gemv(weight, x, 128, 1, 4)
    tol = 6e-5 if weight.asym else 1e-5
    assert (np.abs(got - x @ w.T.astype(np.float64)) <= tol * (np.abs(x) @ np.abs(w).T)).all()


def test_input_pairs_hold_each_groups_inputs_at_every_pair_of_positions():
    """`input_pairs`: entry (m, g, n) is (x[m, 4g + (n & 3)], x[m, 4g + (n >> 2)]) for every nibble n, over more
    groups than one program takes (K = 600: 150 groups, three programs, the last partial)."""
    import torch

    from edgec.kernels.triton.gemv_sparse import input_pairs

    x = np.random.default_rng(5).standard_normal((3, 600)).astype(np.float32)
    got = input_pairs(torch.from_numpy(x)).numpy()
    nibble = np.arange(16)
    groups = x.reshape(3, 150, 4)
    expected = np.stack([groups[:, :, nibble & 3], groups[:, :, nibble >> 2]], axis=3)
    assert got.shape == (3, 150, 16, 2) and (got == expected).all()


FLOAT_CASES = [("2:4", 176, 4), ("2:4+bf16", 176, 4), ("2:4+fp8", 224, 4), ("2:4+nf4:g64", 192, 4)]


@pytest.mark.parametrize("name,k,words", FLOAT_CASES, ids=[c[0] for c in FLOAT_CASES])
@pytest.mark.parametrize("config", range(9))
def test_every_float_sparse_decode_configuration_matches_the_reference(config, name, k, words):
    """2:4 fp16, bf16, fp8 and nf4 values as stored, each autotune configuration launched directly (K of 11, 7 or 3
    steps of four words, split 4 or 16 ways; 70 rows, a partial block; fp8 also without the GPU's e4m3
    conversion)."""
    import torch

    from edgec.kernels.triton.gemv_sparse import (
        GEMV_SPARSE_BLOCKS,
        _gemv_sparse_floats_kernel,
        float_group_steps,
        input_pairs,
        sparse_float_words,
        stored_meta,
    )
    from edgec.kernels.triton.gemv_words import GEMV_WORD_SPLITS

    block_n, warps = GEMV_SPARSE_BLOCKS[config // len(GEMV_WORD_SPLITS)]
    split = GEMV_WORD_SPLITS[config % len(GEMV_WORD_SPLITS)]
    fmt, packed = _sparse((70, k), name, seed=config)
    w = fmt.dequantize(packed, (70, k))
    weight = tk.prepare(fmt, packed, (70, k))
    x = np.random.default_rng(config).standard_normal((3, k)).astype(np.float32)
    out = torch.zeros((3, 70), dtype=torch.float32)
    assert sparse_float_words(k, weight.bits, weight.group if weight.kind == 5 else None) == words
    meta = stored_meta(weight)
    _gemv_sparse_floats_kernel[(triton.cdiv(70, block_n), 3, split)](
        input_pairs(torch.from_numpy(x)), out, weight.q.view(torch.int32), meta, weight.scale, weight.lut, 70, k,
        out.stride(0), weight.q.shape[1] // 4, meta.shape[1], weight.ng, KIND=weight.kind, BITS=weight.bits,
        WORDS=words, GROUP_STEPS=float_group_steps(weight, words), NATIVE_FP8=config % 2 == 0, ASM=False, BLOCK_N=block_n,
        SPLIT_K=split, num_warps=warps)
    assert (np.abs(out.numpy() - x @ w.T) <= 1e-5 * (np.abs(x) @ np.abs(w).T)).all()


@pytest.mark.parametrize("name", ["2:4", "2:4+bf16", "2:4+fp8", "2:4+nf4:g64"])
@pytest.mark.parametrize("shape", [(37, 512), (20, 52)], ids=str)
def test_float_sparse_weights_match_the_reference_through_linear(name, shape):
    """Through `linear`: decode (M = 1, 3) by `gemv_sparse_floats` and prefill (M = 20) by `_gemm_sparse` where a
    step fits K (and nf4's group), by the byte-layout kernels otherwise (K = 52)."""
    import torch

    from edgec.kernels.triton.gemm_sparse import gemm_sparse_fits

    fmt, packed = _sparse(shape, name)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    assert weight.words == 0 and gemm_sparse_fits(weight) == (shape[1] == 512)  # as stored
    for m in (1, 3, 20):
        x = np.random.default_rng(m).standard_normal((m, shape[1])).astype(np.float32)
        tol = 1e-5 if m < 16 else 2e-3
        got = tk.linear(weight, torch.from_numpy(x)).numpy()
        assert (np.abs(got - x @ w.T) <= tol * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), m


@pytest.mark.parametrize("name", ["2:4+int4:g128", "2:4+int8", "2:4+int3:g64", "2:4+int2:g64:asym", "2:4", "2:4+bf16",
                                  "2:4+fp8", "2:4+nf4:g64"])
@pytest.mark.parametrize("config", range(3))
def test_every_sparse_prefill_configuration_matches_the_reference(config, name):
    """`_gemm_sparse`, each configuration launched directly on 40 x rows and 70 weight rows (partial blocks)."""
    import torch

    from edgec.kernels.triton.gemm_sparse import GEMM_SPARSE_BLOCKS, _gemm_sparse, gemm_group_steps, gemm_sparse_fits

    block_m, block_n, warps, _ = GEMM_SPARSE_BLOCKS[config]
    fmt, packed = _sparse((70, 512), name, seed=config)
    w = fmt.dequantize(packed, (70, 512))
    weight = tk.prepare(fmt, packed, (70, 512))
    assert gemm_sparse_fits(weight)
    x = np.random.default_rng(config).standard_normal((40, 512)).astype(np.float32)
    out = torch.zeros((40, 70), dtype=torch.float32)
    q = weight.q_words if weight.words else weight.q.view(torch.int32)
    meta = weight.meta_words if weight.words else weight.meta
    _gemm_sparse.fn[(triton.cdiv(40, block_m), triton.cdiv(70, block_n))](
        torch.from_numpy(x), out, q, meta, weight.scale, weight.minv, weight.lut, 40, 70, 512, 512, out.stride(0),
        q.shape[1], meta.shape[1], weight.ng, KIND=weight.kind, BITS=weight.bits, ASYM=weight.asym,
        WORDS=weight.words, GROUP_STEPS=gemm_group_steps(weight), STEPS=1 if weight.words else 1 + config % 2,
        NATIVE_FP8=config != 1, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps)
    assert (np.abs(out.numpy() - x @ w.T) <= 2e-3 * (np.abs(x) @ np.abs(w).T)).all()


@pytest.mark.parametrize("kind,idp,prmt", [("int4", 6, 6), ("int8", 3, 3), ("int2_asym", 24, 12)])
def test_the_compiled_loop_takes_one_permute_and_one_dp4a_per_four_codes_and_plane(kind, idp, prmt):
    """On a GPU `permute_bytes` is the PRMT and `dot4` the DP4A: the 2:4 GEMV's main loop, compiled for sm_89 and
    sm_90, issues per code word one PRMT and one DP4A per byte vector and plane (int4: 2 vectors, int8: 1, int2: 4),
    and for asymmetric codes one more DP4A each for the kept inputs' sums."""
    counts = loop_opcodes(kind, True, "_gemv_sparse ", ("IDP", "PRMT"))
    assert sorted(counts) == [89, 90]
    for words, idps, prmts in counts.values():
        assert idps == idp * words and prmts >= prmt * words, (kind, words, idps, prmts)
