"""ONNX Runtime decode speed of edgec's int4 export against ONNX Runtime's own int4 quantization.

    python benchmarks/onnx_decode.py                      # SmolLM2-135M, 5 timed runs (a few minutes on 2 cores)
    python benchmarks/onnx_decode.py --quick              # one short run of everything: checks the script works
    python benchmarks/onnx_decode.py --json onnx.json --keep exports/

Four exports of the default model (`load_model()`, SmolLM2-135M-Instruct):

* edgec int4:g128 by RTN, exported by `edgec.exporters.onnx_export.export_onnx` (MatMulNBits, symmetric);
* edgec int4:g128 by GPTQ (calibrated on the shipped Sense and Sensibility), exported the same way;
* the fp32 export quantized by ONNX Runtime's `MatMulNBitsQuantizer` (int4, block 128, symmetric);
* the fp32 export itself, for reference.

Each runs in ONNX Runtime (CPUExecutionProvider, intra_op threads 2 by default): a
32-token prompt from Pride and Prejudice as one prefill step, then 64 greedy decode
steps feeding the present KV back as past; one warm-up run, then the median (and best)
of N runs of decode tokens per second. Quality: mean KL of each export's next-token
distribution from the fp32 torch model's, and top-1 agreement, over a few 128-token
windows of the same text. The head stays fp32 in all four (both quantizers leave it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def decode_run(sess, prompt: np.ndarray, new_tokens: int, kv: tuple[int, int, int]) -> tuple[list[int], float, float]:
    """Greedy generation: prefill (1, T) then `new_tokens` cached steps; returns tokens, prefill s, decode s."""
    layers, heads, head_dim = kv
    past = {f"past_key_values.{i}.{p}": np.zeros((1, heads, 0, head_dim), np.float32)
            for i in range(layers) for p in ("key", "value")}
    t = prompt.shape[1]
    feed = {"input_ids": prompt, "attention_mask": np.ones((1, t), np.int64),
            "position_ids": np.arange(t, dtype=np.int64)[None]}
    start = time.perf_counter()
    logits, *present = sess.run(None, {**feed, **past})
    prefill = time.perf_counter() - start
    tokens = [int(logits[0, -1].argmax())]
    start = time.perf_counter()
    for step in range(new_tokens - 1):
        past = dict(zip(past, present))
        n = t + step + 1
        feed = {"input_ids": np.array([[tokens[-1]]], np.int64), "attention_mask": np.ones((1, n), np.int64),
                "position_ids": np.array([[n - 1]], np.int64)}
        logits, *present = sess.run(None, {**feed, **past})
        tokens.append(int(logits[0, -1].argmax()))
    return tokens, prefill, time.perf_counter() - start


def quality(sess, reference: list[np.ndarray], windows: list[np.ndarray], kv: tuple[int, int, int]) -> tuple[float, float]:
    """Mean KL(fp32 torch || onnx) per position and top-1 agreement over the windows."""
    from edgec.exporters.onnx_validate import compare_logits

    layers, heads, head_dim = kv
    kls, agree, total = [], 0, 0
    for ids, ref in zip(windows, reference):
        past = {f"past_key_values.{i}.{p}": np.zeros((1, heads, 0, head_dim), np.float32)
                for i in range(layers) for p in ("key", "value")}
        t = ids.shape[1]
        logits = sess.run(None, {"input_ids": ids, "attention_mask": np.ones((1, t), np.int64),
                                 "position_ids": np.arange(t, dtype=np.int64)[None], **past})[0][0]
        kls.append(compare_logits(ref, logits)[1])
        agree += int((ref.argmax(-1) == logits.argmax(-1)).sum())
        total += t
    return float(np.concatenate(kls).mean()), agree / total


def export_all(folder: Path) -> dict[str, Path]:
    """The four ONNX files of the default model (see the module docstring)."""
    from edgec.assignment import uniform_assignment
    from edgec.compress import compress
    from edgec.core.formats import parse_format
    from edgec.export_sources import source_from_result
    from edgec.exporters.onnx_baseline import ort_int4_baseline
    from edgec.exporters.onnx_export import export_onnx
    from edgec.models.loading import load_model
    from edgec.passes import LayerConfig

    paths = {"fp32": folder / "smollm2-fp32.onnx", "ort int4 (MatMulNBitsQuantizer)": folder / "smollm2-ort-int4-b128.onnx",
             "edgec int4:g128 rtn": folder / "smollm2-edgec-int4-g128.onnx",
             "edgec int4:g128 gptq": folder / "smollm2-edgec-int4-g128-gptq.onnx"}
    print("exporting fp32 ...", file=sys.stderr)
    export_onnx(source_from_result(load_model(), None), paths["fp32"], progress=True)
    print("quantizing the fp32 export with MatMulNBitsQuantizer ...", file=sys.stderr)
    ort_int4_baseline(paths["fp32"], paths["ort int4 (MatMulNBitsQuantizer)"], block_size=128, symmetric=True)
    for method in ("rtn", "gptq"):
        print(f"compressing int4:g128 by {method} and exporting ...", file=sys.stderr)
        loaded = load_model()
        request = {n: LayerConfig(f, method) for n, f in
                   uniform_assignment(loaded.model, loaded.adapter, parse_format("int4:g128")).items()}
        result = compress(loaded, request, progress=False)
        export_onnx(source_from_result(loaded, result), paths[f"edgec int4:g128 {method}"], progress=True)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per export, interleaved (after one warm-up)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--windows", type=int, default=4, help="128-token windows for the quality check")
    parser.add_argument("--quick", action="store_true", help="1 run of 8 tokens, 1 window: a smoke test, not a measurement")
    parser.add_argument("--keep", type=Path, default=None, help="write the exports to this folder and keep them")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.new_tokens, args.windows = 1, 8, 1

    import torch

    from edgec.data import evaluation_text
    from edgec.exporters.onnx_decoder import kv_shape
    from edgec.exporters.onnx_validate import session
    from edgec.models.loading import load_model

    loaded = load_model()
    kv = kv_shape(loaded.model.config)
    ids = loaded.tokenizer(evaluation_text()[:20_000], return_tensors="np")["input_ids"].astype(np.int64)
    prompt = ids[:, : args.prompt_tokens]
    windows = [ids[:, 1000 + 128 * i: 1000 + 128 * (i + 1)] for i in range(args.windows)]
    with torch.no_grad():
        reference = [loaded.model(input_ids=torch.from_numpy(w)).logits[0].numpy() for w in windows]
    del loaded

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = export_all(folder)
        sessions = {name: session(str(path), threads=args.threads, spin=True)  # ONNX Runtime's default threading
                    for name, path in paths.items()}
        for sess in sessions.values():
            decode_run(sess, prompt, args.new_tokens, kv)  # warm-up
        runs: dict[str, list] = {name: [] for name in sessions}
        for _ in range(args.runs):  # interleaved, so that drift in the machine's speed hits every export alike
            for name, sess in sessions.items():
                time.sleep(0.05)  # let the previous session's spinning threads go idle
                runs[name].append(decode_run(sess, prompt, args.new_tokens, kv))
        rows = {}
        for name, sess in sessions.items():
            rates = [(args.new_tokens - 1) / r[2] for r in runs[name]]
            kl, top1 = quality(sess, reference, windows, kv)
            rows[name] = {"file_mb": paths[name].stat().st_size / 1e6, "decode_tok_s_median": statistics.median(rates),
                          "decode_tok_s_best": max(rates),
                          "prefill_ms": 1e3 * statistics.median(r[1] for r in runs[name]),
                          "kl_vs_fp32": kl, "top1_vs_fp32": top1, "tokens": runs[name][0][0][:8]}
        del sessions

    ours, theirs = rows["edgec int4:g128 rtn"], rows["ort int4 (MatMulNBitsQuantizer)"]
    ratio = ours["decode_tok_s_median"] / theirs["decode_tok_s_median"]
    print(f"SmolLM2-135M-Instruct, ONNX Runtime CPU, {args.threads} threads: {args.prompt_tokens}-token prompt, "
          f"{args.new_tokens} greedy tokens, median of {args.runs} runs after 1 warm-up\n")
    print(f"{'export':<34}{'file MB':>9}{'decode tok/s':>14}{'(best)':>9}{'prefill ms':>12}{'KL vs fp32':>12}{'top-1':>8}")
    for name, r in rows.items():
        print(f"{name:<34}{r['file_mb']:>9.1f}{r['decode_tok_s_median']:>14.1f}{r['decode_tok_s_best']:>9.1f}"
              f"{r['prefill_ms']:>12.1f}{r['kl_vs_fp32']:>12.4f}{r['top1_vs_fp32']:>8.1%}")
    print(f"\nedgec int4 / ORT int4 decode speed: x{ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"keep": str(args.keep), "json": str(args.json)},
                                         "results": rows, "ratio_edgec_over_ort": ratio}, indent=1))


if __name__ == "__main__":
    main()
