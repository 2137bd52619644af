"""Triton kernels (edgec.kernels.triton) on a GPU: GB/s of stored weights and speed against torch's fp16 matmul.

    python benchmarks/triton_kernels.py [--formats int4:g128,int8,...] [--json triton.json]
    TRITON_INTERPRET=1 python benchmarks/triton_kernels.py --quick     # checks the script on CPU; no figures

Shapes: SmolLM2-135M's fused qkv (960, 576), gate+up (3072, 576), down (576, 1536) and head
(49152, 576), and a 7B LLaMA's qkv (12288, 4096), gate+up (22016, 4096) and down (4096, 11008).
M = 1 (decode GEMV) and M = 512 (prefill GEMM). Each kernel is validated against the format's
numpy dequantization first, then timed with `triton.testing.do_bench` (median), beside
`x.half() @ W.half().T` (torch, cuBLAS) timed the same way in the same run, and at M = 1 beside
torch's int4 tinygemm (`_weight_int4pack_mm`, group 128) where this torch has it. First the
GPU's device-to-device copy bandwidth is measured (a 1 GiB copy: bytes read + written over
time). Reported per format and shape: microseconds, GB/s of stored weight bytes read and its
fraction of that copy bandwidth, TFLOP/s, torch fp16's time over the kernel's (and tinygemm's),
and once per format and shape the prepare time and the bytes the prepared weight holds on the
device. The targets: decode >= 70 % of the copy bandwidth for every format, int4:g128 at least
as fast as tinygemm and >= 3x torch fp16; prefill >= 50 % of torch fp16's throughput.

Then the decoder's other steps (`edgec.kernels.triton.ops`) against what torch does with
the same float32 tensors, each checked against torch's result first: RMSNorm and SwiGLU
(eager torch), rotary positions (torch's rotate-half), and attention against
`F.scaled_dot_product_attention` (float32, grouped-query) for decode at a 2,048-token
cache and a 512-token causal prefill, for SmolLM2's and a 7B LLaMA's dimensions. The
ratio torch/Triton says where a Triton kernel earns its place (> 1) and where torch would
do (the runtime should use torch where it is at least as fast).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SMOL = {"qkv": (960, 576), "gate_up": (3072, 576), "down": (576, 1536), "head": (49152, 576)}
LLAMA7B = {"7b qkv": (12288, 4096), "7b gate_up": (22016, 4096), "7b down": (4096, 11008)}
FORMATS = "int4:g128,int4:g128:asym,int3:g128,int2:g64,int8,nf4:g64,fp8,fp16,2:4,2:4+int4:g128,2:4+int8,2:4+nf4:g64"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default=FORMATS)
    parser.add_argument("--peak-gbs", type=float, default=None,
                        help="the GPU's data-sheet memory bandwidth, to print each kernel's share of it too")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one format per family: checks the script")
    parser.add_argument("--json", type=str)
    args = parser.parse_args()

    import torch
    import triton.testing

    from edgec.core.formats import parse_format
    from edgec.kernels import triton as tk

    if not tk.available():
        sys.exit(f"Triton kernels unavailable: {tk.unavailable_reason()}")
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    device = "cpu" if interpreted else "cuda"
    shapes = {"tiny": (40, 96)} if args.quick else {**SMOL, **LLAMA7B}
    ms = (1, 16) if args.quick else (1, 512)
    formats = ["int4:g32", "fp8", "2:4+int4:g32"] if args.quick else args.formats.split(",")
    if interpreted:
        print("TRITON_INTERPRET=1: checking the script only; these timings are not figures")

    def bench(fn) -> float:
        if interpreted:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        return triton.testing.do_bench(fn, return_mode="median") * 1e-3

    copy_gbs = copy_bandwidth(device, bench, (1 << 20) if args.quick else (1 << 30))
    print(f"device-to-device copy: {copy_gbs:,.0f} GB/s (bytes read + written)")
    rng = np.random.default_rng(0)
    rows, prepared = [], []
    for name, (n, k) in shapes.items():
        w = rng.standard_normal((n, k), dtype=np.float32) * 0.05
        w16 = torch.from_numpy(w).to(device).half()
        weights = {}
        for text in formats:
            fmt = parse_format(text)
            if fmt.is_sparse and k % 4:
                continue
            packed = fmt.quantize(w)
            start = time.perf_counter()
            weights[text] = fmt, packed, tk.prepare(fmt, packed, (n, k), device=device)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            prepared.append({"format": text, "shape": name, "prepare_seconds": seconds,
                             "prepared_bytes": weights[text][2].prepared_bytes, "stored_bytes": fmt.nbytes((n, k))})
            print(f"{text:>16} {name:>11} prepared in {seconds * 1e3:7.1f} ms, "
                  f"{prepared[-1]['prepared_bytes'] / 1e6:8.2f} MB on the device ({fmt.nbytes((n, k)) / 1e6:8.2f} stored)")
        for m in ms:
            x = torch.randn((m, k), device=device)
            x16 = x.half()
            t_torch = bench(lambda: x16 @ w16.T)
            t_tiny = tinygemm_seconds(n, k, x, bench) if m == 1 and not interpreted else None
            for text, (fmt, packed, weight) in weights.items():
                expected = x.cpu().numpy() @ fmt.dequantize(packed, (n, k)).T
                got = tk.linear(weight, x).cpu().numpy()
                scale = np.abs(x.cpu().numpy()) @ np.abs(fmt.dequantize(packed, (n, k))).T
                if not (np.abs(got - expected) <= (1e-5 if m < 16 else 2e-3) * scale + 1e-30).all():
                    sys.exit(f"{text} {name} M={m}: the kernel disagrees with the numpy reference")
                t = bench(lambda: tk.linear(weight, x))
                stored = fmt.nbytes((n, k))
                rows.append({"format": text, "shape": name, "n": n, "k": k, "m": m, "seconds": t,
                             "torch_fp16_seconds": t_torch, "tinygemm_seconds": t_tiny, "gbs": stored / t / 1e9,
                             "copy_fraction": stored / t / 1e9 / copy_gbs, "tflops": 2 * m * n * k / t / 1e12})
                r = rows[-1]
                tiny = f"  x{t_tiny / t:5.2f} tinygemm" if t_tiny else ""
                peak = f" ({r['gbs'] / args.peak_gbs:6.1%} of data-sheet peak)" if args.peak_gbs else ""
                print(f"{text:>16} {name:>11} M={m:<4} {t * 1e6:10.1f} us {r['gbs']:8.1f} GB/s "
                      f"({r['copy_fraction']:6.1%} of copy){peak} {r['tflops']:7.2f} TFLOP/s  "
                      f"x{t_torch / t:5.2f} torch fp16" + tiny)
    ops_rows = small_ops(device, bench, quick=args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name() if device == "cuda" else "interpreter",
                       "copy_gbs": copy_gbs, "rows": rows, "prepared": prepared, "ops": ops_rows}, f, indent=1)


def copy_bandwidth(device: str, bench, nbytes: int) -> float:
    """GB/s of a device-to-device copy of `nbytes`: bytes read plus bytes written over its time."""
    import torch

    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / bench(lambda: dst.copy_(src)) / 1e9


def tinygemm_seconds(n: int, k: int, x, bench) -> float | None:
    """Time of torch's int4 tinygemm (`_weight_int4pack_mm`, group 128, bf16) on random codes of shape (N, K) for
    x (1, K); None, with the reason printed, where this torch or GPU lacks it. Its packing takes K in multiples
    of 256 per inner K tile (8 tiles for K % 1024 == 0, else fewer)."""
    import torch

    try:
        inner = next(t for t in (8, 4, 2) if k % (128 * t) == 0)
        codes = torch.randint(0, 16, (n, k), dtype=torch.int32, device=x.device)
        packed = torch.ops.aten._convert_weight_to_int4pack((codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8),
                                                             inner)
        scales_zeros = torch.ones((k // 128, n, 2), dtype=torch.bfloat16, device=x.device)
        xb = x.bfloat16()
        torch.ops.aten._weight_int4pack_mm(xb, packed, 128, scales_zeros)
        return bench(lambda: torch.ops.aten._weight_int4pack_mm(xb, packed, 128, scales_zeros))
    except (RuntimeError, AttributeError, NotImplementedError, StopIteration) as error:
        print(f"tinygemm ({n}, {k}): not timed ({str(error).splitlines()[0][:120]})")
        return None


MODELS = {  # hidden, heads, kv heads, head_dim, intermediate
    "smollm2": (576, 9, 3, 64, 1536),
    "7b": (4096, 32, 32, 128, 11008),
}


def small_ops(device: str, bench, quick: bool) -> list[dict]:
    """Time each Triton small op and attention beside its torch equivalent; print and return the rows."""
    import torch
    import torch.nn.functional as F

    from edgec.kernels.triton import ops

    models = {"tiny": (48, 4, 2, 12, 80)} if quick else MODELS
    cache, prompt = (40, 9) if quick else (2048, 512)
    rows = []
    print(f"\n{'op':>32} {'model':>8} {'tokens':>6} {'triton us':>10} {'torch us':>10}  torch/triton")
    for model, (hidden, heads, kv_heads, hd, inter) in models.items():
        half = hd // 2
        angles = torch.rand((cache + prompt, half), device=device) * 6.0
        cos, sin = angles.cos().contiguous(), angles.sin().contiguous()

        def torch_rope(x, start):
            c, s_ = cos[start:start + len(x)][:, None, :], sin[start:start + len(x)][:, None, :]
            a, b = x[..., :half], x[..., half:]
            return torch.cat([a * c - b * s_, b * c + a * s_], dim=-1)

        def torch_attention(q, k, v, start):
            t = q.shape[0]
            mask = (torch.arange(start + t, device=device)[None, :]
                    <= torch.arange(start, start + t, device=device)[:, None])
            out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                                 attn_mask=mask, enable_gqa=kv_heads != heads)
            return out.transpose(0, 1).reshape(t, heads * hd)

        for tokens in (1, prompt):
            x = torch.randn((tokens, hidden), device=device)
            w = torch.rand(hidden, device=device) + 0.5
            g, u = torch.randn((tokens, inter), device=device), torch.randn((tokens, inter), device=device)
            q = torch.randn((tokens, heads, hd), device=device)
            start = cache if tokens == 1 else 0
            k = torch.randn((start + tokens, kv_heads, hd), device=device)
            v = torch.randn((start + tokens, kv_heads, hd), device=device)
            position = ops.position_tensor(start, device)  # in device memory, as the decoder keeps it
            cases = {
                "rms_norm": (lambda: ops.rms_norm(x, w, 1e-5),
                             lambda: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w),
                "silu_mul": (lambda: ops.silu_mul_(g.clone(), u), lambda: F.silu(g) * u),
                "rope": (lambda: ops.rope_(q.clone(), cos, sin, position), lambda: torch_rope(q, start)),
                f"attention ({'decode' if tokens == 1 else 'prefill'})":
                    (lambda: ops.attention(q, k, v, position), lambda: torch_attention(q, k, v, start)),
            }
            if tokens == 1:  # a long context, where flash decoding's spans fill the GPU
                long_start = max(4 * cache, 2 * ops.DECODE_SPAN)
                long_k, long_v = (torch.randn((long_start + 1, kv_heads, hd), device=device) for _ in range(2))
                long_position = ops.position_tensor(long_start, device)
                cases[f"attention (decode, {long_start} keys)"] = (
                    lambda: ops.attention(q, long_k, long_v, long_position),
                    lambda: torch_attention(q, long_k, long_v, long_start))
            for name, (ours, theirs) in cases.items():
                got, want = ours().reshape(-1), theirs().reshape(-1)
                # attention prefill runs tl.dot in tf32 on a GPU; everything else is float32
                tol = 2e-3 if name.startswith("attention") and tokens > 1 and device == "cuda" else 1e-4
                if not torch.allclose(got, want, rtol=tol, atol=tol):
                    sys.exit(f"{name} {model} T={tokens}: the Triton op disagrees with torch "
                             f"(max |diff| {float((got - want).abs().max()):.3g})")
                t_ours, t_theirs = bench(ours), bench(theirs)
                rows.append({"op": name, "model": model, "tokens": tokens, "seconds": t_ours,
                             "torch_seconds": t_theirs})
                print(f"{name:>32} {model:>8} {tokens:>6} {t_ours * 1e6:10.1f} {t_theirs * 1e6:10.1f}  "
                      f"x{t_theirs / t_ours:5.2f}")
    return rows


if __name__ == "__main__":
    main()
