"""`_gemm_sparse`: the prefill GEMM for 2:4 weights of symmetric int4 codes (in the 2:4 word layout) and of fp16 or
bf16 values (as stored).

Each program takes a BLOCK_M x BLOCK_N output tile and walks K sixteen input columns (four groups)
at a time: the groups' kept values and position nibbles make a dense (BLOCK_N, 16) tile (`dense_tile`:
each column is the kept value whose position it is, or 0; two compares and two selects per entry)
that meets the x tile of the same columns in one `tl.dot`, as float16 (bf16 as float32, tf32 on a
GPU) with float32 accumulation. A weight's decode serves the BLOCK_M rows of x, where the
byte-layout GEMM gathers each kept value by column arithmetic from byte loads.

* int4 (KIND 4), the 2:4 word layout (`word_layout.sparse_interleave`): four code words of a row
  hold slot s of groups s·W + i .. s·W + i + 3 (sixteen consecutive columns) for each s, so one
  step loads four words and their 16-bit meta words (128-bit loads) and makes four tiles, c − 8
  times the group scale.
* fp16 and bf16 (KIND 0, 1), as stored: four consecutive 32-bit words (the groups' kept pairs)
  and two meta bytes per row and step.

Rows past M or N read row M − 1 or N − 1 and are not stored.
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.matmul import _interpreted, prefill_grid
from edgec.kernels.triton.word_values import half_value

GEMM_SPARSE_BLOCKS = ((128, 128, 8, 2), (64, 128, 4, 2), (64, 64, 4, 2))  # BLOCK_M, BLOCK_N, warps, stages


def gemm_sparse_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 prefill; the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in GEMM_SPARSE_BLOCKS]
    return configs[:1] if _interpreted() else configs


@triton.jit
def dense_tile(first, second, nibbles, BLOCK_N: tl.constexpr):
    """Four groups' kept values (BLOCK_N, 4) each and position nibbles (i0 | i1 << 2) as the dense (BLOCK_N, 16)
    tile of their sixteen columns: column 4g + p holds the kept value at position p of group g, or 0."""
    at_first = nibbles & 3
    at_second = nibbles >> 2
    d0 = tl.where(at_first == 0, first, 0.0)
    d1 = tl.where(at_first == 1, first, tl.where(at_second == 1, second, 0.0))
    d2 = tl.where(at_first == 2, first, tl.where(at_second == 2, second, 0.0))
    d3 = tl.where(at_second == 3, second, 0.0)
    four = tl.join(tl.join(d0, d1), tl.join(d2, d3))  # [row, group, a, b]: position a + 2b
    return tl.reshape(tl.permute(four, (0, 1, 3, 2)), (BLOCK_N, 16))


@triton.autotune(configs=gemm_sparse_configs(), key=["N", "K", "KIND", "WORDS", "GROUP_STEPS"])
@triton.jit
def _gemm_sparse(x_ptr, y_ptr, q_ptr, meta_ptr, scale_ptr, M, N, K, stride_xm, stride_ym, q_stride, meta_stride, ng,
                 KIND: tl.constexpr, WORDS: tl.constexpr, GROUP_STEPS: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(rn, N - 1).to(tl.int64)[:, None]
    four = tl.arange(0, 4)[None, :]
    x_rows = x_ptr + tl.minimum(rm, M - 1).to(tl.int64)[:, None] * stride_xm + tl.arange(0, 16)[None, :]
    dot_type = tl.float32 if KIND == 1 else tl.float16  # bf16 values may exceed float16's range: tf32 on a GPU
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    if KIND == 4:
        q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
        meta_rows = meta_ptr + tl.multiple_of(rows * q_stride, [4, 1])  # a 16-bit meta word per code word
        for step in range(0, K // 64):
            code_words = tl.load(q_rows + 4 * step + four).to(tl.uint32, bitcast=True)
            meta = tl.load(meta_rows + 4 * step + four).to(tl.uint16, bitcast=True).to(tl.int32)
            chunk = step // (WORDS // 4)
            scale = tl.load(scale_ptr + rows * ng + chunk // GROUP_STEPS)
            for slot in tl.static_range(4):
                first = ((code_words >> (4 * (4 * (slot % 2) + slot // 2))) & 15).to(tl.int32) - 8
                second = ((code_words >> (4 * (4 * (slot % 2) + 2 + slot // 2))) & 15).to(tl.int32) - 8
                tile = dense_tile(first.to(tl.float32) * scale, second.to(tl.float32) * scale,
                                  (meta >> (4 * slot)) & 15, BLOCK_N)
                column = 4 * (chunk * 4 * WORDS + slot * WORDS + 4 * (step % (WORDS // 4)))
                acc = tl.dot(tl.load(x_rows + column).to(dot_type), tl.trans(tile.to(dot_type)), acc)
    else:
        q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
        meta_rows = meta_ptr + rows * meta_stride
        for step in range(0, K // 16):
            pairs = tl.load(q_rows + 4 * step + four).to(tl.uint32, bitcast=True)
            packed = tl.load(meta_rows + 2 * step + tl.arange(0, 2)[None, :]).to(tl.int32)
            nibbles = tl.reshape(tl.join(packed & 15, packed >> 4), (BLOCK_N, 4))  # group 2j low, 2j + 1 high
            tile = dense_tile(half_value(pairs, 0, KIND), half_value(pairs, 1, KIND), nibbles, BLOCK_N)
            acc = tl.dot(tl.load(x_rows + 16 * step).to(dot_type), tl.trans(tile.to(dot_type)), acc)
    tl.store(y_ptr + rm[:, None].to(tl.int64) * stride_ym + rn[None, :], acc, mask=(rm < M)[:, None] & (rn < N)[None, :])


def gemm_sparse_fits(weight) -> bool:
    """Whether `_gemm_sparse` reads `weight`: 2:4 over symmetric int4 in the 2:4 word layout, or over fp16 or bf16
    with K a multiple of 16."""
    from edgec.kernels.triton.gemv_sparse import sparse_float_words

    if weight.meta is None:
        return False
    if weight.kind == 4:
        return bool(weight.words)
    return weight.kind in (0, 1) and sparse_float_words(weight.shape[1]) is not None


def gemm_sparse(weight, x, out) -> None:
    """y = x @ W^T into `out` (M >= 16 rows of float32 x) for a weight `gemm_sparse_fits`, autotuned."""
    import torch

    (m, k), n = x.shape, weight.shape[0]

    grid = prefill_grid(m, n)
    words = weight.words
    q = weight.q_words if words else weight.q.view(torch.int32)
    meta = weight.meta.view(torch.int16) if words else weight.meta
    _gemm_sparse[grid](x, out, q, meta, weight.scale, m, n, k, x.stride(0), out.stride(0), q.shape[1], meta.shape[1],
                       weight.ng, KIND=weight.kind, WORDS=words, GROUP_STEPS=weight.group_steps)
