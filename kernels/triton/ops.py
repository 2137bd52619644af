"""The decoder's other operations as Triton kernels, float32 throughout: RMSNorm, SwiGLU, rotary
positions and attention over a key/value cache. They keep a LLaMA-family pass on the device
between the linear layers (runtime_py/backends/triton_decoder.py); each mirrors the numpy
executor's step (runtime_py/executors/common.py, rope.py) and is tested against it.
"""

from __future__ import annotations

import triton
import triton.language as tl

# constexpr, or a compiled (not interpreted) kernel could not read them
SILU_FLUSH = tl.constexpr(-60.0)  # as the numpy executor: silu below it is 0 (subnormal products are slow)
PROB_FLUSH = tl.constexpr(-60.0)  # attention weights below exp(-60) of the row's largest are 0


@triton.jit
def _rms_norm(x_ptr, w_ptr, y_ptr, n, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < n
    x = tl.load(x_ptr + row * n + cols, mask=ok, other=0.0)
    denom = tl.sqrt(tl.sum(x * x, axis=0) / n + eps)
    tl.store(y_ptr + row * n + cols, x / denom * tl.load(w_ptr + cols, mask=ok, other=0.0), mask=ok)


def rms_norm(x, weight, eps: float):
    """x / sqrt(mean(x^2) + eps) * weight over the last axis of a contiguous float32 tensor."""
    import torch

    n = x.shape[-1]
    y = torch.empty_like(x)
    _rms_norm[(x.numel() // n,)](x, weight, y, n, eps, BLOCK=triton.next_power_of_2(n))
    return y


@triton.jit
def _silu_mul(g_ptr, u_ptr, total, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < total
    g = tl.load(g_ptr + offs, mask=ok, other=0.0)
    u = tl.load(u_ptr + offs, mask=ok, other=0.0)
    y = tl.where(g < SILU_FLUSH, 0.0, g / (1.0 + tl.exp(-tl.maximum(g, SILU_FLUSH))) * u)  # no overflow below the flush
    tl.store(g_ptr + offs, y, mask=ok)


def silu_mul_(gate, up):
    """gate = silu(gate) * up, in place (SwiGLU)."""
    total = gate.numel()
    _silu_mul[(triton.cdiv(total, 1024),)](gate, up, total, BLOCK=1024)
    return gate


@triton.jit
def _rope(x_ptr, cos_ptr, sin_ptr, start_ptr, heads, half, BLOCK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    start = tl.load(start_ptr)
    h = tl.program_id(1).to(tl.int64)
    j = tl.arange(0, BLOCK)
    ok = j < half
    base = x_ptr + (t * heads + h) * 2 * half
    a = tl.load(base + j, mask=ok, other=0.0)
    b = tl.load(base + half + j, mask=ok, other=0.0)
    c = tl.load(cos_ptr + (start + t) * half + j, mask=ok, other=0.0)
    s = tl.load(sin_ptr + (start + t) * half + j, mask=ok, other=0.0)
    tl.store(base + j, a * c - b * s, mask=ok)
    tl.store(base + half + j, b * c + a * s, mask=ok)


def rope_(x, cos, sin, start):
    """Rotate the two halves of every head of x (T, heads, head_dim) in place, for positions start.. (an int,
    or `position_tensor`'s device tensor, which a captured decode step updates between replays)."""
    t, heads, hd = x.shape
    _rope[(t, heads)](x, cos, sin, position_tensor(start, x.device), heads, hd // 2,
                      BLOCK=triton.next_power_of_2(hd // 2))
    return x


def position_tensor(start, device):
    """`start` as the int64 device tensor (1,) the rotary and attention kernels read it from (a tensor passes
    through)."""
    import torch

    if isinstance(start, torch.Tensor):
        return start
    return torch.tensor([start], dtype=torch.int64, device=device)


@triton.jit
def _attend(q, k_ptr, v_ptr, g, kv_heads, head_dim, scale, lo, pos, begin, end, BLOCK_S: tl.constexpr,
            BLOCK_D: tl.constexpr):
    """One query q (BLOCK_D,) over the cached keys begin.. end - 1 (from a multiple of BLOCK_S) that lie in
    lo..pos, of kv head g, with a running (online) softmax: (weighted values, unnormalized; largest score, -inf
    if no key; sum of weights)."""
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    top = -float("inf")
    total = 0.0
    acc = tl.zeros((BLOCK_D,), tl.float32)
    for s0 in range(begin, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        keep = (s >= lo) & (s <= pos)
        rows = (s * kv_heads + g) * head_dim
        k = tl.load(k_ptr + rows[:, None] + d[None, :], mask=keep[:, None] & d_ok[None, :], other=0.0)
        score = tl.where(keep, tl.sum(k * q[None, :], axis=1) * scale, -float("inf"))
        new_top = tl.maximum(top, tl.max(score, axis=0))
        p = tl.where(score - new_top < PROB_FLUSH, 0.0, tl.exp(score - new_top))
        shrink = tl.exp(top - new_top)
        v = tl.load(v_ptr + rows[:, None] + d[None, :], mask=keep[:, None] & d_ok[None, :], other=0.0)
        acc = acc * shrink + tl.sum(p[:, None] * v, axis=0)
        total = total * shrink + tl.sum(p, axis=0)
        top = new_top
    return acc, top, total


@triton.jit
def _decode_query(q_ptr, start_ptr, t, h, heads, kv_heads, head_dim, window, BLOCK_D: tl.constexpr):
    """Query row t's head h, at position start + t: (its vector (BLOCK_D,), its kv head, its position, the first
    position its window keeps)."""
    pos = tl.load(start_ptr) + t
    d = tl.arange(0, BLOCK_D)
    q = tl.load(q_ptr + (t * heads + h) * head_dim + d, mask=d < head_dim, other=0.0)
    return q, h // (heads // kv_heads), pos, tl.where(window > 0, tl.maximum(pos - window + 1, 0), 0)


@triton.jit
def _attention(q_ptr, k_ptr, v_ptr, o_ptr, start_ptr, heads, kv_heads, head_dim, window, scale,
               BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """One query (token t, head h) over its keys, in blocks with a running (online) softmax."""
    t = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    q, g, pos, lo = _decode_query(q_ptr, start_ptr, t, h, heads, kv_heads, head_dim, window, BLOCK_D)
    # the first block holds a kept key
    acc, top, total = _attend(q, k_ptr, v_ptr, g, kv_heads, head_dim, scale, lo, pos, lo // BLOCK_S * BLOCK_S, pos + 1,
                              BLOCK_S, BLOCK_D)
    d = tl.arange(0, BLOCK_D)
    tl.store(o_ptr + (t * heads + h) * head_dim + d, acc / total, mask=d < head_dim)


@triton.jit
def _attention_tiled(q_ptr, k_ptr, v_ptr, o_ptr, t_count, start_ptr, heads, kv_heads, head_dim, window, scale,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """BLOCK_M query tokens of one head over their keys in BLOCK_N blocks, FlashAttention style: the
    scores and the weighted values of a block are two tl.dot products, the softmax runs online."""
    start = tl.load(start_ptr)
    mb = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1).to(tl.int64)
    g = h // (heads // kv_heads)
    t = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    t_ok = t < t_count
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    q = tl.load(q_ptr + (t[:, None] * heads + h) * head_dim + d[None, :], mask=t_ok[:, None] & d_ok[None, :],
                other=0.0)
    pos = start + t
    first = start + mb * BLOCK_M
    last = start + tl.minimum(mb * BLOCK_M + BLOCK_M, t_count) - 1
    lo = tl.where(window > 0, tl.maximum(first - window + 1, 0), 0)
    top = tl.full((BLOCK_M,), -float("inf"), tl.float32)
    total = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for s0 in range(lo // BLOCK_N * BLOCK_N, last + 1, BLOCK_N):
        s = s0 + tl.arange(0, BLOCK_N)
        s_ok = (s >= lo) & (s <= last)
        rows = (s * kv_heads + g) * head_dim
        kv_mask = s_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
        keep = (s[None, :] <= pos[:, None]) & s_ok[None, :]
        keep = keep & ((window <= 0) | (s[None, :] > pos[:, None] - window))
        score = tl.where(keep, tl.dot(q, tl.trans(k)) * scale, -float("inf"))
        new_top = tl.maximum(top, tl.max(score, axis=1))
        base = tl.where(new_top == -float("inf"), 0.0, new_top)  # a row with no key kept yet
        rel = score - base[:, None]
        p = tl.where(rel < PROB_FLUSH, 0.0, tl.exp(rel))
        shrink = tl.exp(top - base)
        v = tl.load(v_ptr + rows[:, None] + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * shrink[:, None] + tl.dot(p, v)
        total = total * shrink + tl.sum(p, axis=1)
        top = new_top
    total = tl.where(t_ok, total, 1.0)  # rows past the prompt kept no key; they are not stored
    tl.store(o_ptr + (t[:, None] * heads + h) * head_dim + d[None, :], acc / total[:, None],
             mask=t_ok[:, None] & d_ok[None, :])


@triton.jit
def _attention_split(q_ptr, k_ptr, v_ptr, acc_ptr, stats_ptr, start_ptr, heads, kv_heads, head_dim, window, scale,
                     splits, SPAN: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    """One decode query's head over one span of SPAN cached keys (flash decoding): the span's unnormalized weighted
    values, its largest score and its sum of weights, for `_attention_combine`. Spans past the position, or
    before the window, hold no key and say so (largest score -inf, sum 0)."""
    h = tl.program_id(0).to(tl.int64)
    span = tl.program_id(1).to(tl.int64)
    q, g, pos, lo = _decode_query(q_ptr, start_ptr, 0, h, heads, kv_heads, head_dim, window, BLOCK_D)
    begin = tl.maximum(span * SPAN, lo // BLOCK_S * BLOCK_S)
    acc, top, total = _attend(q, k_ptr, v_ptr, g, kv_heads, head_dim, scale, lo, pos, begin,
                              tl.minimum(span * SPAN + SPAN, pos + 1), BLOCK_S, BLOCK_D)
    at = h * splits + span
    d = tl.arange(0, BLOCK_D)
    tl.store(acc_ptr + at * head_dim + d, acc, mask=d < head_dim)
    tl.store(stats_ptr + 2 * at, top)
    tl.store(stats_ptr + 2 * at + 1, total)


@triton.jit
def _attention_combine(acc_ptr, stats_ptr, o_ptr, start_ptr, head_dim, window, splits, SPAN: tl.constexpr,
                       BLOCK_D: tl.constexpr):
    """The spans of one head, from `_attention_split`, as its attention output: each span's weights rescaled to the
    largest score of all."""
    pos = tl.load(start_ptr)
    h = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < head_dim
    lo = tl.where(window > 0, tl.maximum(pos - window + 1, 0), 0)
    top = -float("inf")
    total = 0.0
    acc = tl.zeros((BLOCK_D,), tl.float32)
    for span in range(lo // SPAN, pos // SPAN + 1):
        at = h * splits + span
        span_top = tl.load(stats_ptr + 2 * at)
        new_top = tl.maximum(top, span_top)
        base = tl.where(new_top == -float("inf"), 0.0, new_top)
        old, new = tl.exp(top - base), tl.exp(span_top - base)
        acc = acc * old + tl.load(acc_ptr + at * head_dim + d, mask=d_ok, other=0.0) * new
        total = total * old + tl.load(stats_ptr + 2 * at + 1) * new
        top = new_top
    tl.store(o_ptr + h * head_dim + d, acc / total, mask=d_ok)


DECODE_SPAN = 256
"""Cached keys per program of the split decode attention: a cache longer than this is read by one program per
span and head (flash decoding), so a long context fills the GPU instead of one program per head."""

TILED_FROM = 2
"""Query tokens from which attention runs tiled (`_attention_tiled`); one token runs `_attention`."""


def tiled_blocks(tokens: int, head_dim: int) -> tuple[int, int]:
    """(BLOCK_M, warps) of the tiled attention: the largest query block that compiles without spilling
    registers on sm_80 to sm_90 (tests/kernels/test_triton_compile.py); keys go in blocks of 32."""
    if head_dim > 64 or tokens <= 16:
        return 16, (4 if head_dim <= 64 else 8)
    return 32, 8


def attention(q, keys, values, start, window: int = 0):
    """Causal attention of q (T, heads, hd) at positions start.. over keys/values (S, kv_heads, hd); (T, heads * hd).
    `start` is an int or a `position_tensor`; keys past the last position are not read, so S may be the cache's whole
    context.

    One token (decode) runs one program per head over its keys in float32, or, when `keys` hold more
    than DECODE_SPAN rows, one per head and span of them, combined by a second kernel (flash
    decoding); a prompt runs the tiled kernel, whose two products per key block go through tl.dot
    (on a GPU in tf32, the precision class of the prefill GEMM's float16 operands; exact float32
    in the interpreter).
    """
    import torch

    t, heads, hd = q.shape
    out = torch.empty_like(q)
    start = position_tensor(start, q.device)
    block_d = max(16, triton.next_power_of_2(hd))
    if t >= TILED_FROM:
        block, warps = tiled_blocks(t, hd)
        _attention_tiled[(triton.cdiv(t, block), heads)](
            q, keys, values, out, t, start, heads, keys.shape[1], hd, window, hd ** -0.5,
            BLOCK_M=block, BLOCK_N=32, BLOCK_D=block_d, num_warps=warps)
    elif keys.shape[0] > DECODE_SPAN:
        splits = triton.cdiv(keys.shape[0], DECODE_SPAN)
        acc = torch.empty((heads, splits, hd), dtype=torch.float32, device=q.device)
        stats = torch.empty((heads, splits, 2), dtype=torch.float32, device=q.device)
        _attention_split[(heads, splits)](q, keys, values, acc, stats, start, heads, keys.shape[1], hd, window,
                                          hd ** -0.5, splits, SPAN=DECODE_SPAN, BLOCK_S=32,
                                          BLOCK_D=triton.next_power_of_2(hd))
        _attention_combine[(heads,)](acc, stats, out, start, hd, window, splits, SPAN=DECODE_SPAN,
                                     BLOCK_D=triton.next_power_of_2(hd))
    else:
        _attention[(t, heads)](q, keys, values, out, start, heads, keys.shape[1], hd, window, hd ** -0.5,
                               BLOCK_S=32, BLOCK_D=triton.next_power_of_2(hd))
    return out.reshape(t, heads * hd)
