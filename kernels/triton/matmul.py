"""`linear`: y = x @ W^T from a prepared weight's stored buffers, by Triton kernels.

Weights in the word layout (`edgec.kernels.triton.word_layout`) decode through `gemv_ints` (M < 16,
4-, 3- and 2-bit integers), `_gemv_words` (M < 16, the rest) and `_gemm_words` (gemv_ints.py,
gemv_words.py, gemm_words.py); 2:4 weights through `gemv_sparse` (M < 16, integers in the 2:4 word
layout), `gemv_sparse_floats` (M < 16, fp16, bf16, fp8 and nf4 as stored) and `_gemm_sparse`
(gemv_sparse.py, gemm_sparse.py) where their K and group allow; every other weight through the two
kernels here, which read codes as stored (and the word layout by remapping columns, for the
few chunks the word-layout GEMM cannot take):

* `_gemv` (M < 16 rows, decode): one program per block of BLOCK_N output rows, one x row and
  one K split; each weight tile is decoded in registers and multiplied elementwise with the x
  row, accumulated in float32. With SPLIT_K > 1 the partial sums are added atomically into a
  zeroed output (more programs when N alone does not fill the GPU).
* `_gemm` (prefill): BLOCK_M x BLOCK_N output tiles; per K step an x tile and a decoded weight
  tile meet in `tl.dot` as float16 with float32 accumulation, on tensor cores on a GPU (bf16
  weights, whose range float16 lacks, as float32: tf32 tensor cores).

Block sizes come from `gemv_configs` / `gemm_configs` (autotuned per N, K on a GPU; one fixed
configuration in the interpreter, where tuning would only cost time). Sizes that are not
multiples of a block, group or byte are masked.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl
from edgec.kernels.triton.dequant import decode_tile
from edgec.kernels.triton.word_layout import codes_per_word

GEMV_MAX_M = 16  # below this many rows the elementwise kernel runs; tl.dot needs 16


# Only tiles that compile without spilling registers for every storage kind, dense and 2:4, on
# sm_80 to sm_90, and fit the 99 KB of shared memory of an RTX 30/40 (benchmarks/triton_resources.py,
# tests/kernels/test_triton_compile.py): a decoded weight tile lives in registers, so larger tiles
# (e.g. 64 x 128 for decode, 128 x 128 x 64 for prefill) spilled hundreds of bytes per thread.
GEMV_BLOCKS = ((16, 128, 4), (32, 64, 8), (8, 256, 2))  # BLOCK_N, BLOCK_K, warps
GEMM_BLOCKS = ((16, 32, 32, 4, 2), (64, 64, 32, 8, 2), (128, 64, 32, 8, 3))  # BLOCK_M, _N, _K, warps, stages


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def gemv_configs() -> list[triton.Config]:
    """Block sizes tried for decode; the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": sk}, num_warps=w)
               for bn, bk, w in GEMV_BLOCKS for sk in (1, 4)]
    return configs[:1] if _interpreted() else configs


def gemm_configs() -> list[triton.Config]:
    """Block sizes tried for prefill; the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
               for bm, bn, bk, w, s in GEMM_BLOCKS]
    return configs[:1] if _interpreted() else configs


def decode_grid(n: int, m: int):
    """The launch grid of a decode GEMV over N output rows and M x rows: (row blocks, M, K splits)."""
    return lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), m, meta["SPLIT_K"])


def prefill_grid(m: int, n: int):
    """The launch grid of a prefill GEMM of M x rows and N output rows: (M blocks, N blocks)."""
    return lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))


_KEY = ["N", "K", "KIND", "BITS", "SPARSE"]


@triton.autotune(configs=gemv_configs(), key=_KEY, reset_to_zero=["y_ptr"])
@triton.jit
def _gemv(x_ptr, y_ptr, q_ptr, scale_ptr, min_ptr, lut_ptr, meta_ptr, N, K, stride_xm, stride_ym,
          q_stride, ng, group, meta_stride, KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr,
          SPARSE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr):
    pid_n, m, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    acc = tl.zeros((BLOCK_N,), tl.float32)
    k_per_split = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
    k_start = pid_k * k_per_split
    for k0 in range(k_start, k_start + k_per_split, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        col_ok = cols < K
        x = tl.load(x_ptr + m * stride_xm + cols, mask=col_ok, other=0.0).to(tl.float32)
        w = decode_tile(q_ptr, scale_ptr, min_ptr, lut_ptr, meta_ptr, rows[:, None], cols[None, :],
                        row_ok[:, None] & col_ok[None, :], q_stride, ng, group, meta_stride, KIND, BITS, ASYM, SPARSE, 0)
        acc += tl.sum(w * x[None, :], axis=1)
    out = y_ptr + m * stride_ym + rows
    if SPLIT_K == 1:
        tl.store(out, acc, mask=row_ok)
    else:
        tl.atomic_add(out, acc, mask=row_ok)


@triton.autotune(configs=gemm_configs(), key=_KEY + ["WORDS"])
@triton.jit
def _gemm(x_ptr, y_ptr, q_ptr, scale_ptr, min_ptr, lut_ptr, meta_ptr, M, N, K, stride_xm, stride_ym,
          q_stride, ng, group, meta_stride, KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr,
          SPARSE: tl.constexpr, WORDS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
          BLOCK_K: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    dot_type = tl.float32 if KIND == 1 else tl.float16  # bf16 weights may exceed float16's range: tf32 on a GPU
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rm[:, None].to(tl.int64) * stride_xm + rk[None, :],
                    mask=(rm < M)[:, None] & (rk < K)[None, :], other=0.0)
        w = decode_tile(q_ptr, scale_ptr, min_ptr, lut_ptr, meta_ptr, rn[:, None], rk[None, :],
                        (rn < N)[:, None] & (rk < K)[None, :], q_stride, ng, group, meta_stride, KIND, BITS, ASYM, SPARSE,
                        WORDS)
        acc += tl.dot(x.to(dot_type), tl.trans(w.to(dot_type)))
    tl.store(y_ptr + rm[:, None].to(tl.int64) * stride_ym + rn[None, :], acc,
             mask=(rm < M)[:, None] & (rn < N)[None, :])


def linear(weight, x, out=None):
    """y = x @ W^T: x a float tensor (M, K) on the weight's device, rows contiguous; returns float32 (M, N).

    Decode-sized inputs (M < 16) multiply in float32, or for 4-, 3- and 2-bit integer codes in the word layout
    exactly in integers, with each chunk of x held to 23 bits below its largest value (`gemv_ints`); larger ones
    multiply float16 operands (float32, tf32 on a GPU, for bf16 weights) with float32 accumulation. Wrong dtypes,
    shapes or devices raise TypeError/ValueError naming the argument.
    """
    import torch

    n, k = weight.shape
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != k or x.shape[0] < 1:
        raise ValueError(f"x must have shape (M, {k}) for a weight of shape ({n}, {k}), got {tuple(x.shape)}")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device}, the weight on {weight.device}")
    if x.stride(1) != 1:
        x = x.contiguous()
    m = x.shape[0]
    if out is None:
        out = torch.empty((m, n), dtype=torch.float32, device=x.device)
    elif out.shape != (m, n) or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 tensor of shape ({m}, {n})")
    if m < GEMV_MAX_M and weight.meta is not None and not weight.words:
        from edgec.kernels.triton.gemv_sparse import gemv_sparse_floats, sparse_float_fits

        if sparse_float_fits(weight):
            gemv_sparse_floats(weight, x, out)
            return out
    if m < GEMV_MAX_M and weight.words:
        if weight.meta is not None:
            from edgec.kernels.triton.gemv_sparse import gemv_sparse

            gemv_sparse(weight, x, out)
        elif weight.kind == 4:
            from edgec.kernels.triton.gemv_ints import gemv_ints

            gemv_ints(weight, x, out)
        else:
            _gemv_words_call(weight, x, out)
        return out
    if m >= GEMV_MAX_M and weight.meta is not None:
        from edgec.kernels.triton.gemm_sparse import gemm_sparse, gemm_sparse_fits

        if gemm_sparse_fits(weight):
            gemm_sparse(weight, x, out)
            return out
    if m >= GEMV_MAX_M and gemm_words_fits(weight):
        _gemm_words_call(weight, x, out)
        return out
    meta = weight.meta if weight.meta is not None else weight.q
    common = (weight.q, weight.scale, weight.minv, weight.lut, meta)
    sizes = (weight.q.shape[1], weight.ng, weight.group, meta.shape[1] if weight.meta is not None else 0)
    flags = dict(KIND=weight.kind, BITS=weight.bits, ASYM=weight.asym, SPARSE=weight.meta is not None)
    if m < GEMV_MAX_M:
        out.zero_()  # split-K programs add into it
        grid = decode_grid(n, m)
        _gemv[grid](x, out, *common, n, k, x.stride(0), out.stride(0), *sizes, **flags)
    else:
        grid = prefill_grid(m, n)
        _gemm[grid](x, out, *common, m, n, k, x.stride(0), out.stride(0), *sizes, WORDS=weight.words, **flags)
    return out


def _gemv_words_call(weight, x, out) -> None:
    """The word-layout decode GEMV for float, int8 and nf4 codes (`edgec.kernels.triton.gemv_words`), autotuned."""
    from edgec.kernels.triton.gemv_words import _gemv_words

    args, flags = gemv_words_operands(weight, x, out)
    _gemv_words[decode_grid(weight.shape[0], x.shape[0])](*args, **flags)


def gemm_words_fits(weight) -> bool:
    """Whether the word-layout prefill GEMM reads `weight`: a dense chunk of 16, 8 or 4 words holding at least the
    16 columns one `tl.dot` takes (every dense word-layout weight but 16-bit ones in 4-word chunks; 2:4 weights
    prefill through `_gemm`)."""
    return weight.meta is None and weight.words in (4, 8, 16) and codes_per_word(weight.bits) * weight.words >= 16


def _gemm_words_call(weight, x, out) -> None:
    """The word-layout prefill GEMM (`edgec.kernels.triton.gemm_words`), autotuned."""
    from edgec.kernels.triton.gemm_words import _gemm_words

    (m, k), n = x.shape, weight.shape[0]
    grid = prefill_grid(m, n)
    _gemm_words[grid](x, out, weight.q_words, weight.scale, weight.minv, weight.exponent, weight.lut, m, n, k,
                      x.stride(0), out.stride(0), weight.q_words.shape[1], weight.ng, ASYM=weight.asym,
                      GROUP_WORDS=weight.group_words, **_word_flags(weight, x.device))


def aligned_rows(x):
    """x (M, K) float32, or a contiguous copy of it where its rows do not all start 16-byte aligned (as the decode
    GEMVs' 128-bit loads of x and their alignment hints need)."""
    import torch

    if x.data_ptr() % 16 or (x.shape[0] > 1 and x.stride(0) % 4):
        return x.clone(memory_format=torch.contiguous_format)
    return x


def gemv_words_operands(weight, x, out) -> tuple[tuple, dict]:
    """The word-layout GEMV's arguments and constexprs (storage, and ASM: inline PTX unless interpreted) for
    y = x @ W^T into `out` (x copied first where its rows are not 16-byte aligned, `aligned_rows`). ValueError where
    nf4's value table is misaligned (`weights.value_table`)."""
    from edgec.kernels.triton.weights import value_table

    table = value_table(weight)
    x = aligned_rows(x)
    n, k = weight.shape
    args = (x, out, weight.q_words, weight.scale, weight.exponent, table, n, k, x.stride(0), out.stride(0),
            weight.q_words.shape[1], weight.ng)
    return args, {**_word_flags(weight, x.device), "ASM": not _interpreted()}


def _word_flags(weight, device) -> dict:
    """The storage constexprs the word-layout GEMV and GEMM both take (NATIVE_FP8 matters to fp8 only: True
    elsewhere, so other kinds compile once whatever the GPU); the GEMM also takes ASYM."""
    return dict(KIND=weight.kind, BITS=weight.bits, WORDS=weight.words, GROUP_STEPS=weight.group_steps,
                NATIVE_FP8=weight.kind != 2 or native_fp8(device))


def native_fp8(device) -> bool:
    """Whether Triton converts e4m3 codes in hardware on `device` (compute capability 8.9 and later; the
    interpreter emulates it)."""
    import torch

    return device.type != "cuda" or torch.cuda.get_device_capability(device) >= (8, 9)
