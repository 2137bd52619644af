"""The word layout of codes and the decode GEMVs that read it (edgec.kernels.triton.word_layout, gemv_words,
gemv_ints), in Triton's interpreter, against the format library's numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.core.formats import parse_format
from edgec.kernels import triton as tk
from edgec.kernels.triton.weights import GROUPED_KINDS
from edgec.kernels.triton.word_layout import chunk_words, group_words, interleave

pytestmark = pytest.mark.skipif(not tk.available(), reason=f"{tk.unavailable_reason()}")


def test_nibble_j_of_word_i_holds_column_j_times_w_plus_i():
    k, words = 64, 4  # two chunks of 32 columns
    codes = np.arange(k, dtype=np.uint8) % 16
    stored = (codes[0::2] | (codes[1::2] << 4))[None, :]
    packed = interleave(stored, k, 4, words)[0]
    for chunk in range(2):
        for i in range(words):
            for j in range(8):
                column = chunk * 8 * words + j * words + i
                assert (packed[chunk * words + i] >> (4 * j)) & 15 == codes[column]


def test_two_bit_value_j_of_word_i_sits_at_bit_2j():
    from edgec.core.formats.bitpack import pack_bits

    k, words = 128, 8
    codes = np.random.default_rng(1).integers(0, 4, (2, k)).astype(np.uint8)
    packed = interleave(pack_bits(codes, 2), k, 2, words)
    for i in range(words):
        for j in range(16):
            assert (packed[1, i] >> (2 * j)) & 3 == codes[1, j * words + i]


def test_whole_byte_values_interleave_the_same_way():
    k, words = 32, 4
    values = np.arange(2 * k, dtype=np.uint16).reshape(2, k)
    for bits, stored in ((8, values.astype(np.uint8)), (16, values)):
        per_word = 32 // bits
        packed = interleave(stored.view(np.uint8), k, bits, words)
        for i in range(k // per_word):
            chunk, word = divmod(i, words)
            for j in range(per_word):
                value = (packed[1, i] >> (bits * j)) & ((1 << bits) - 1)
                assert value == stored[1, chunk * per_word * words + j * words + word]


def test_three_bit_codes_come_in_a_low_and_a_high_plane():
    """The 3-bit layout of the module docstring, decoded as the kernels do: even values from (low & 0x33333333) |
    (high' & 0x44444444), odd ones from low >> 2 and high' >> 1, high' the high word shifted left 2 for odd low
    words; 8-word chunks are 8 low then 4 high words."""
    from edgec.core.formats.bitpack import pack_bits

    k, words = 256, 8
    codes = np.random.default_rng(0).integers(0, 8, (3, k)).astype(np.uint8)
    packed = interleave(pack_bits(codes, 3), k, 3, words)
    assert packed.shape == (3, k * 3 // 32)
    for row in range(3):
        for chunk in range(k // (16 * words)):
            for i in range(words):
                low, high = int(packed[row, 12 * chunk + i]), int(packed[row, 12 * chunk + words + i // 2])
                shifted = (high << 2) & 0xFFFFFFFF if i % 2 else high
                even = (low & 0x33333333) | (shifted & 0x44444444)
                odd = ((low >> 2) & 0x33333333) | ((shifted >> 1) & 0x44444444)
                for j in range(16):
                    slots = odd if j % 2 else even
                    assert (slots >> (4 * (j // 2))) & 7 == codes[row, chunk * 16 * words + j * words + i]


def test_chunk_is_the_widest_that_divides_k_and_the_group():
    assert chunk_words(4096, 128, 4) == 16
    assert chunk_words(576, 128, 4) == 8  # SmolLM2's hidden size
    assert chunk_words(4096, 32, 4) == 4
    assert chunk_words(200, 64, 4) is None
    assert chunk_words(576, None, 8) == 16 and chunk_words(576, None, 16) == 16
    assert chunk_words(200, None, 8) is None  # not a multiple of 16 values
    assert chunk_words(4096, 128, 3) == 8 and chunk_words(4096, 256, 3) == 16
    assert chunk_words(4096, 128, 2) == 8 and chunk_words(4096, 64, 2) == 4


def test_groups_smaller_than_any_chunk_share_one_in_runs_of_whole_words():
    """3-bit codes in groups of 64 or 32 (4-word chunks would not stay 16-byte aligned) and 2-bit codes in groups of
    32: the widest chunk holding whole groups, each group a run of group / 16 words."""
    assert chunk_words(4096, 64, 3) == 16 and group_words(64, 3, 16) == 4
    assert chunk_words(4096, 32, 3) == 16 and group_words(32, 3, 16) == 2
    assert chunk_words(576, 32, 2) == 4 and group_words(32, 2, 4) == 2
    assert chunk_words(576, 32, 3) == 4 and group_words(32, 3, 4) == 2  # no chunk of 8 or 16 words divides 576


def test_three_bit_codes_take_4_word_chunks_only_where_k_leaves_nothing_wider():
    """4-word 3-bit chunks (6 stored words) start 8-byte aligned: for a K that 128 does not divide."""
    assert chunk_words(576, 128, 3) == 4 and chunk_words(576, 64, 3) == 4 and chunk_words(960, None, 3) == 4
    assert chunk_words(4096, 64, 3) == 16 and chunk_words(200, 128, 3) is None
    assert group_words(128, 3, 8) == 8 and group_words(None, 8, 16) == 16


def test_a_chunk_of_several_groups_keeps_each_group_in_its_own_run_of_words():
    """Value j of word r·S + i' holds column r·S·P + j·S + i' (S words a group, P values a word)."""
    from edgec.core.formats.bitpack import pack_bits

    k, words, span = 128, 8, 2  # 2-bit codes: one chunk of 128 columns, four groups of 32
    codes = np.random.default_rng(2).integers(0, 4, (2, k)).astype(np.uint8)
    packed = interleave(pack_bits(codes, 2), k, 2, words, span)
    for word in range(words):
        run, i = divmod(word, span)
        for j in range(16):
            assert (packed[1, word] >> (2 * j)) & 3 == codes[1, run * span * 16 + j * span + i]


def _check(fmt: str, shape: tuple[int, int], ms=(1, 3), launch=None):
    import torch

    fmt = parse_format(fmt)
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal(shape).astype(np.float32) * 0.05
    w0[0, :3] = [0.9, -1.3, 3.0]
    packed = fmt.quantize(w0)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    grouped = weight.kind in GROUPED_KINDS
    assert weight.words == (chunk_words(shape[1], weight.group if grouped else None, weight.bits) or 0)
    for m in ms:
        x = rng.standard_normal((m, shape[1])).astype(np.float32)
        got = (launch or tk.linear)(weight, torch.from_numpy(x)).numpy()
        tol = 1e-5 if m < 16 else 2e-3
        assert (np.abs(got - x @ w.T) <= tol * (np.abs(x) @ np.abs(w).T) + 1e-30).all(), (str(fmt), shape, m)


@pytest.mark.parametrize("fmt", ["int4:g32", "int4:g64:asym", "int4:g128", "int4:g128:asym", "int4:g256", "int8",
                                 "fp8", "fp16", "bf16", "nf4:g64", "nf4:g128", "int3:g128", "int3:g128:asym",
                                 "int3:g256", "int3:g64", "int3:g32:asym", "int2:g128", "int2:g64:asym", "int2:g32",
                                 "int2:g32:asym"])
@pytest.mark.parametrize("shape", [(37, 256), (70, 576)], ids=str)
def test_word_layout_weights_match_the_reference_in_decode_and_prefill(fmt, shape):
    _check(fmt, shape, ms=(1, 3, 20))


CONFIG_FORMATS = {"words": ("int8", "bf16", "fp16", "nf4:g64", "fp8", "nf4:g32", "int8", "fp8", "nf4:g128"),
                  "ints": ("int4:g64", "int4:g64:asym", "int3:g128", "int2:g32", "int4:g32:asym", "int2:g64:asym",
                           "int3:g64:asym", "int4:g128", "int2:g64")}
"""Per GEMV (`_gemv_words`, `_gemv_ints`) a format for each of its 9 configurations."""


@pytest.mark.parametrize("kernel", ["words", "ints"])
@pytest.mark.parametrize("config", range(9))
def test_every_decode_configuration_matches_the_reference(config, kernel):
    """Each autotune configuration of both word-layout GEMVs, launched directly (the interpreter's autotuner takes
    only the first): 6 or 9 chunks split 4 or 16 ways leave splits empty; 70 rows leave a partial block."""
    import torch
    import triton

    from edgec.kernels.triton.gemv_ints import GEMV_INT_BLOCKS, _gemv_ints_kernel, split_chunks
    from edgec.kernels.triton.gemv_words import GEMV_WORD_BLOCKS, GEMV_WORD_SPLITS, _gemv_words
    from edgec.kernels.triton.matmul import gemv_words_operands

    blocks = GEMV_INT_BLOCKS if kernel == "ints" else GEMV_WORD_BLOCKS
    assert len(blocks) * len(GEMV_WORD_SPLITS) == len(CONFIG_FORMATS[kernel])
    block_n, warps = blocks[config // len(GEMV_WORD_SPLITS)]
    split = GEMV_WORD_SPLITS[config % len(GEMV_WORD_SPLITS)]

    def launch(weight, x):
        out = torch.zeros((x.shape[0], weight.shape[0]), dtype=torch.float32)
        grid = (triton.cdiv(weight.shape[0], block_n), x.shape[0], split)
        if kernel == "ints":
            n, k = weight.shape
            _gemv_ints_kernel[grid](*split_chunks(weight, x), out, weight.q_words, weight.scale, weight.minv, n, k,
                                    out.stride(0), weight.q_words.shape[1], weight.ng, BITS=weight.bits,
                                    ASYM=weight.asym, WORDS=weight.words, GROUP_WORDS=weight.group_words,
                                    GROUP_STEPS=weight.group_steps, DP4A=False, BLOCK_N=block_n, SPLIT_K=split,
                                    num_warps=warps)
        else:
            args, flags = gemv_words_operands(weight, x, out)
            _gemv_words.fn[grid](*args, **flags, BLOCK_N=block_n, SPLIT_K=split, num_warps=warps)
        return out

    _check(CONFIG_FORMATS[kernel][config], (70, 768 if kernel == "ints" else 576), launch=launch)


@pytest.mark.parametrize("fmt", ["nf4:g64", "2:4+nf4:g64"])
def test_nf4_value_tables_start_256_byte_aligned_and_a_misaligned_one_is_refused(fmt):
    """The nf4 GEMVs' table loads put a code's byte offset in the low byte of the table's address
    (`word_values.table_values`): `prepare` places every table at a multiple of 256 bytes, and a decode names a table
    that is not, dense or 2:4."""
    import dataclasses

    import torch

    from edgec.kernels.triton.weights import TABLE_ALIGNMENT, aligned_table

    values = np.arange(272, dtype=np.float32)
    for size in range(1, 64, 8):  # whatever the allocator returns
        _ = torch.empty(size)
        table = aligned_table(values, "cpu")
        assert table.data_ptr() % TABLE_ALIGNMENT == 0 and np.array_equal(table.numpy(), values)
    fmt = parse_format(fmt)
    weight = tk.prepare(fmt, fmt.quantize(np.ones((4, 256), np.float32)), (4, 256))
    assert weight.lut.data_ptr() % TABLE_ALIGNMENT == 0
    shifted = torch.zeros(weight.lut.numel() + 1)[1:]
    with pytest.raises(ValueError, match="nf4's value table must start at a multiple of 256 bytes"):
        tk.linear(dataclasses.replace(weight, lut=shifted), torch.ones((1, 256)))


def test_narrower_chunks_take_proportionally_more_rows():
    """`rows_for_chunk`, the autotuner's configuration hook: a thread keeps 16 words of codes whatever the chunk, so
    each input it loads serves as many rows (8-word chunks: twice the rows, 4-word: four times)."""
    from edgec.kernels.triton.gemv_words import gemv_word_configs, rows_for_chunk

    configs = gemv_word_configs()
    for words, factor in ((16, 1), (8, 2), (4, 4)):
        scaled = rows_for_chunk(configs, WORDS=words, KIND=5)
        assert [c.kwargs["BLOCK_N"] for c in scaled] == [c.kwargs["BLOCK_N"] * factor for c in configs]
        assert [(c.kwargs["SPLIT_K"], c.num_warps, c.pre_hook) for c in scaled] == [
            (c.kwargs["SPLIT_K"], c.num_warps, c.pre_hook) for c in configs]


def test_every_finite_fp8_code_decodes_exactly():
    """fp8 words are widened by the GPU's own e4m3 conversion: each finite code, subnormals included, against the
    format library's table (a row holding 448 gets scale 1, so every value is its own code)."""
    import torch

    from edgec.core.formats.fp8 import e4m3fn_to_float32
    from edgec.kernels.triton.gemv_words import _gemv_words
    from edgec.kernels.triton.matmul import gemv_words_operands

    values = e4m3fn_to_float32(np.arange(256, dtype=np.uint8))
    row = np.where(np.isfinite(values), values, 0.0).astype(np.float32)[None, :]
    fmt = parse_format("fp8")
    weight = tk.prepare(fmt, fmt.quantize(row), row.shape)
    assert weight.words
    identity = torch.eye(256, dtype=torch.float32)

    def launch(x, native):
        out = torch.zeros((x.shape[0], 1), dtype=torch.float32)
        args, flags = gemv_words_operands(weight, x, out)
        _gemv_words.fn[(1, x.shape[0], 1)](*args, **{**flags, "NATIVE_FP8": native}, BLOCK_N=64, SPLIT_K=1)
        return out

    for native in (True, False):  # the GPU's conversion (sm_89 on), and the bit moves before it
        decoded = torch.cat([launch(identity[i:i + 8], native) for i in range(0, 256, 8)])[:, 0].numpy()
        assert np.array_equal(decoded, row[0]), native
    nan_row = fmt.quantize(row)
    nan_row["qdata"][0, 5] = 0x7F
    assert np.isnan(tk.linear(tk.prepare(fmt, nan_row, row.shape), identity[:1]).numpy()).all()


def test_prefill_takes_the_word_layout_gemm_for_every_chunk_of_16_columns_or_more(monkeypatch):
    """20 rows go through `_gemm_words` (and match the reference) for 16-, 8- and 4-word chunks of int4 (one value,
    or 2 or 4 joined, per 16-column tile); fp16 in 4-word chunks (8 columns) through the byte-remapping GEMM."""
    from edgec.kernels.triton import gemm_words

    calls = []
    monkeypatch.setattr(gemm_words, "_gemm_words", _Spy(gemm_words._gemm_words, calls))
    for fmt, shape, words in (("int4:g128", (37, 256), 16), ("int4:g64", (37, 256), 8), ("int4:g32:asym", (37, 256), 4),
                              ("nf4:g32", (37, 256), 4), ("int8", (37, 576), 16), ("fp16", (21, 48), 8)):
        assert _words(fmt, shape) == words, fmt
        _check(fmt, shape, ms=(20,))
    assert len(calls) == 6
    assert _words("fp16", (21, 200)) == 4  # 4 words of 2 values: 8 columns a chunk
    _check("fp16", (21, 200), ms=(20,))
    assert len(calls) == 6


def _words(fmt: str, shape: tuple[int, int]) -> int:
    fmt = parse_format(fmt)
    w0 = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return tk.prepare(fmt, fmt.quantize(w0), shape).words


class _Spy:
    """A launcher that records its launches and passes them on."""

    def __init__(self, kernel, calls: list) -> None:
        self.kernel, self.calls = kernel, calls

    def __getitem__(self, grid):
        self.calls.append(grid)
        return self.kernel[grid]


def test_a_misaligned_input_view_is_read_correctly():
    import torch

    fmt, shape = parse_format("int4:g32"), (9, 64)
    w0 = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    packed = fmt.quantize(w0)
    w = fmt.dequantize(packed, shape)
    weight = tk.prepare(fmt, packed, shape)
    base = torch.from_numpy(np.random.default_rng(1).standard_normal(2 * 64 + 1).astype(np.float32))
    x = base[1:65][None, :]  # starts 4 bytes past an allocation
    assert x.data_ptr() % 16
    got = tk.linear(weight, x).numpy()
    xn = x.numpy()
    assert np.allclose(got, xn @ w.T, rtol=0, atol=1e-5 * float((np.abs(xn) @ np.abs(w).T).max()))
