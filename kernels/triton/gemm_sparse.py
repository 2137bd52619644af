"""`_gemm_sparse`: the prefill GEMM for 2:4 weights: integer codes in the 2:4 word layout, fp16, bf16, fp8 and nf4
values as stored.

Each program takes a BLOCK_M x BLOCK_N output tile and walks K sixteen input columns (four groups)
at a time: the groups' kept values and positions make a dense (BLOCK_N, 16) tile (`dense_tile`:
each column is the kept value whose position it is, or 0; two compares and two selects per entry)
that meets the x tile of the same columns in one `tl.dot`, as float16 (bf16 as float32, tf32 on a
GPU) with float32 accumulation. A weight's decode serves the BLOCK_M rows of x, where the
byte-layout GEMM gathers each kept value by column arithmetic from byte loads.

* int8, int4 (int3 as int4 codes) and int2, the 2:4 word layout (`word_layout.sparse_interleave`):
  four code words of a row hold slot s of groups s·W + i .. s·W + i + 3 (sixteen consecutive
  columns) for each of the 16 / B slots, so one step loads four words and their meta words
  (128-bit loads for int2's) and makes a tile per slot, values narrowed to float16 first.
* fp16, bf16, fp8 and nf4 (KIND 0, 1, 2, 5), as stored: the words holding four groups' kept pairs
  (4, 2 or 1) and two meta bytes per row and step, two steps an iteration where K allows.

Rows past M or N read row M − 1 or N − 1 and are not stored.
"""

from __future__ import annotations

import triton
import triton.language as tl
from edgec.kernels.triton.gemv_sparse import meta_word, slot_positions, sparse_float_fits
from edgec.kernels.triton.matmul import _interpreted, prefill_grid
from edgec.kernels.triton.word_values import word_value

GEMM_SPARSE_BLOCKS = ((128, 128, 8, 2), (128, 64, 4, 2), (64, 64, 4, 2))  # BLOCK_M, BLOCK_N, warps, stages


def gemm_sparse_configs() -> list[triton.Config]:
    """Block sizes tried for 2:4 prefill; the interpreter takes the first."""
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
               for bm, bn, w, s in GEMM_SPARSE_BLOCKS]
    return configs[:1] if _interpreted() else configs


@triton.jit
def dense_tile(first, second, at_first, at_second, BLOCK_N: tl.constexpr):
    """Four groups' kept values (BLOCK_N, 4) each and their positions (i0 < i1) as the dense (BLOCK_N, 16) tile of
    their sixteen columns: column 4g + p holds the kept value at position p of group g, or 0."""
    d0 = tl.where(at_first == 0, first, 0.0)
    d1 = tl.where(at_first == 1, first, tl.where(at_second == 1, second, 0.0))
    d2 = tl.where(at_first == 2, first, tl.where(at_second == 2, second, 0.0))
    d3 = tl.where(at_second == 3, second, 0.0)
    four = tl.join(tl.join(d0, d1), tl.join(d2, d3))  # [row, group, a, b]: position a + 2b
    return tl.reshape(tl.permute(four, (0, 1, 3, 2)), (BLOCK_N, 16))


@triton.autotune(configs=gemm_sparse_configs(),
                 key=["N", "K", "KIND", "BITS", "ASYM", "WORDS", "GROUP_STEPS", "STEPS", "NATIVE_FP8"])
@triton.jit
def _gemm_sparse(x_ptr, y_ptr, q_ptr, meta_ptr, scale_ptr, min_ptr, lut_ptr, M, N, K, stride_xm, stride_ym, q_stride,
                 meta_stride, ng, KIND: tl.constexpr, BITS: tl.constexpr, ASYM: tl.constexpr, WORDS: tl.constexpr,
                 GROUP_STEPS: tl.constexpr, STEPS: tl.constexpr, NATIVE_FP8: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rows = tl.minimum(rn, N - 1).to(tl.int64)[:, None]
    four = tl.arange(0, 4)[None, :]
    x_rows = x_ptr + tl.minimum(rm, M - 1).to(tl.int64)[:, None] * stride_xm + tl.arange(0, 16)[None, :]
    dot_type = tl.float32 if KIND == 1 else tl.float16  # bf16 values may exceed float16's range: tf32 on a GPU
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    q_rows = q_ptr + tl.multiple_of(rows * q_stride, [4, 1])
    if WORDS > 0:  # integer codes in the 2:4 word layout
        SLOTS: tl.constexpr = 16 // BITS  # groups a code word holds (word_layout.sparse_interleave)
        MASK: tl.constexpr = (1 << BITS) - 1
        meta_rows = meta_ptr + tl.multiple_of(rows * q_stride, [4, 1])  # a meta word per code word
        for step in range(0, K // (16 * SLOTS)):
            code_words = tl.load(q_rows + 4 * step + four).to(tl.uint32, bitcast=True)
            meta = meta_word(tl.load(meta_rows + 4 * step + four), SLOTS // 2)
            chunk = step // (WORDS // 4)
            if BITS == 8:  # one scale per row
                scale = tl.load(scale_ptr + rows)
            else:
                scale = tl.load(scale_ptr + rows * ng + chunk // GROUP_STEPS)
            if ASYM:
                minimum = tl.load(min_ptr + rows * ng + chunk // GROUP_STEPS)
            for slot in tl.static_range(SLOTS):
                at = 16 * (slot % 2) + BITS * (slot // 2)  # the first kept code's bit; the second's is 8 above
                first = ((code_words >> at) & MASK).to(tl.int32)
                second = ((code_words >> (at + 8)) & MASK).to(tl.int32)
                if BITS == 8:  # signed bytes
                    first = (first ^ 128) - 128
                    second = (second ^ 128) - 128
                elif not ASYM:  # stored c ^ 2^(B−1): c − 2^(B−1) in two's complement
                    first = (first ^ (1 << (BITS - 1))) - (1 << (BITS - 1))
                    second = (second ^ (1 << (BITS - 1))) - (1 << (BITS - 1))
                if ASYM:
                    first_value = tl.fma(first.to(tl.float32), scale, minimum)
                    second_value = tl.fma(second.to(tl.float32), scale, minimum)
                else:
                    first_value = first.to(tl.float32) * scale
                    second_value = second.to(tl.float32) * scale
                at_first, at_second = slot_positions(meta, slot, SLOTS // 2)
                # narrowed before the tile is built: half the registers (none spills then, int2's eight slots included)
                tile = dense_tile(first_value.to(dot_type), second_value.to(dot_type), at_first, at_second, BLOCK_N)
                column = 4 * (chunk * SLOTS * WORDS + slot * WORDS + 4 * (step % (WORDS // 4)))
                acc = tl.dot(tl.load(x_rows + column).to(dot_type), tl.trans(tile.to(dot_type)), acc)
    else:  # values as stored, 16 / BITS groups a word: four groups (16 columns) a step, STEPS steps an iteration
        GROUPS: tl.constexpr = 16 // BITS
        meta_rows = meta_ptr + rows * meta_stride
        shift = 2 * BITS * (four % GROUPS)  # where each group's kept pair starts in its word
        for outer in range(0, K // (16 * STEPS)):
            for inner in tl.static_range(STEPS):
                step = outer * STEPS + inner
                values = tl.load(q_rows + (4 * step + four) // GROUPS).to(tl.uint32, bitcast=True) >> shift
                packed = tl.load(meta_rows + 2 * step + tl.arange(0, 2)[None, :]).to(tl.int32)
                nibbles = tl.reshape(tl.join(packed & 15, packed >> 4), (BLOCK_N, 4))  # group 2j low, 2j + 1 high
                first = word_value(values, values, values, lut_ptr, 0, KIND, BITS, False, NATIVE_FP8)
                second = word_value(values >> BITS, values, values, lut_ptr, 0, KIND, BITS, False, NATIVE_FP8)
                if KIND == 2:  # one scale per row (times 256 where the codes decoded as their value / 256)
                    scale = tl.load(scale_ptr + rows) * (1.0 if NATIVE_FP8 else 256.0)
                    first *= scale
                    second *= scale
                elif KIND == 5:  # a scale per group of values: a step's eight lie in one
                    scale = tl.load(scale_ptr + rows * ng + step // GROUP_STEPS)
                    first *= scale
                    second *= scale
                tile = dense_tile(first, second, nibbles & 3, nibbles >> 2, BLOCK_N)
                acc = tl.dot(tl.load(x_rows + 16 * step).to(dot_type), tl.trans(tile.to(dot_type)), acc)
    tl.store(y_ptr + rm[:, None].to(tl.int64) * stride_ym + rn[None, :], acc, mask=(rm < M)[:, None] & (rn < N)[None, :])


def gemm_sparse_fits(weight) -> bool:
    """Whether `_gemm_sparse` reads `weight`: 2:4 over int8, int4, int3 or int2 in the 2:4 word layout, or over
    fp16, bf16, fp8 or nf4 as stored where `sparse_float_words` allows."""
    return weight.meta is not None and (bool(weight.words) or sparse_float_fits(weight))


def gemm_sparse(weight, x, out) -> None:
    """y = x @ W^T into `out` (M >= 16 rows of float32 x) for a weight `gemm_sparse_fits`, autotuned."""
    import torch

    from edgec.kernels.triton.matmul import native_fp8

    (m, k), n = x.shape, weight.shape[0]
    grid = prefill_grid(m, n)
    words = weight.words
    q = weight.q_words if words else weight.q.view(torch.int32)
    meta = weight.meta_words if words else weight.meta
    _gemm_sparse[grid](x, out, q, meta, weight.scale, weight.minv, weight.lut, m, n, k, x.stride(0), out.stride(0),
                       q.shape[1], meta.shape[1], weight.ng, KIND=weight.kind, BITS=weight.bits, ASYM=weight.asym,
                       WORDS=words, GROUP_STEPS=gemm_group_steps(weight), STEPS=stored_steps(k) if not words else 1,
                       NATIVE_FP8=weight.kind != 2 or native_fp8(x.device))


def stored_steps(k: int) -> int:
    """Steps of four groups (16 columns) per iteration of `_gemm_sparse` over values as stored: 2 where they divide
    K / 16 (half the iterations, each with twice the multiply-adds for its loop overhead; 4 spill registers of bf16
    and nf4 tiles on sm_80 and sm_89), else 1."""
    return 2 if k % 32 == 0 else 1


def gemm_group_steps(weight) -> int:
    """`_gemm_sparse`'s steps per scale group: chunks of the 2:4 word layout per group, or over nf4 as stored the
    group's steps of eight values."""
    if weight.words:
        return weight.group_steps
    return weight.group // 8 if weight.kind == 5 else 1
