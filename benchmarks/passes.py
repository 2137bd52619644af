"""Compression passes compared on both real models: quality, wall time and peak memory.

    python benchmarks/passes.py --json passes.json > passes.md       # everything (about half an hour on 2 cores)
    python benchmarks/passes.py --only smollm2:int4:g128:gptq           # one configuration

Each configuration runs in its own subprocess (`--one`), so its peak RSS is its own:
load the model, compress it (timed: calibration included, model load excluded), read
the peak RSS, then evaluate. SmolLM2 is scored by perplexity on the first 16,384 tokens
of Pride and Prejudice in windows of 512 (as `edgec eval`); all-MiniLM-L6-v2 by the mean
cosine similarity of 512 sentence embeddings to the fp32 original's. Calibration: the
CLI's defaults (windows of Sense and Sensibility; 128-token windows for the encoder).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

# (model, format, method, unstructured sparsity)
SMOLLM2 = [("smollm2", f, m, 0.0) for f in ("int4:g128", "int3:g128", "nf4:g64") for m in ("rtn", "gptq", "awq")] + [
    ("smollm2", "2:4", m, 0.0) for m in ("magnitude", "wanda", "sparsegpt")] + [
    ("smollm2", "fp16", m, 0.5) for m in ("magnitude", "wanda", "sparsegpt")] + [
    ("smollm2", "2:4+int4:g128", m, 0.0) for m in ("wanda", "sparsegpt")]
MINILM = [("minilm", f, m, 0.0) for f in ("int4:g128", "nf4:g64") for m in ("rtn", "gptq", "awq")] + [
    ("minilm", "2:4", m, 0.0) for m in ("magnitude", "wanda", "sparsegpt")]
CONFIGS = SMOLLM2 + MINILM


def key(config: tuple) -> str:
    model, fmt, method, sparsity = config
    return f"{model}:{fmt}:{method}" + (f":{sparsity:g}" if sparsity else "")


def run_one(config: tuple) -> dict:
    """Compress and evaluate one configuration in this process."""
    import copy

    from edgec.assignment import uniform_assignment
    from edgec.compress import CalibrationSettings, compress
    from edgec.core.formats import parse_format
    from edgec.data import evaluation_text
    from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
    from edgec.evaluation.encoder import compare_encoder, split_sentences
    from edgec.models.loading import load_model
    from edgec.passes import LayerConfig

    model, fmt, method, sparsity = config
    loaded = load_model(model)
    original = copy.deepcopy(loaded.model) if loaded.task == "encoder" else None
    fmt = parse_format(fmt)
    request = {n: LayerConfig(f, method, sparsity) for n, f in uniform_assignment(loaded.model, loaded.adapter, fmt).items()}
    calibration = CalibrationSettings() if loaded.task == "causal-lm" else CalibrationSettings(seq_len=128)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = compress(loaded, request, calibration, progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"config": key(config), "model": model, "format": str(fmt), "method": method, "sparsity": sparsity,
           "seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": rss_before,
           "calibration_tokens": result.calibration_tokens}
    text = evaluation_text()
    if loaded.task == "causal-lm":
        windows = token_windows(loaded.tokenizer, text, 512, 16384)
        out["perplexity"] = compare_causal_lm(loaded.model, None, windows, progress=False).perplexity_original
    else:
        sentences = split_sentences(text, 512)
        out["mean_cosine"] = compare_encoder(original, loaded.model, loaded.tokenizer, sentences, progress=False).mean_cosine
    return out


def baselines() -> dict:
    """The uncompressed models' scores on the same data."""
    from edgec.data import evaluation_text
    from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
    from edgec.models.loading import load_model

    loaded = load_model("smollm2")
    windows = token_windows(loaded.tokenizer, evaluation_text(), 512, 16384)
    return {"smollm2_perplexity": compare_causal_lm(loaded.model, None, windows, progress=False).perplexity_original}


def table(rows: list[dict], base: dict) -> str:
    lines = [f"SmolLM2-135M-Instruct, original perplexity {base['smollm2_perplexity']:.3f}.\n",
             "| format | method | perplexity | gap closed vs RTN | wall time s | peak RSS MB |", "|---|---|---:|---:|---:|---:|"]
    rtn = {r["format"]: r["perplexity"] for r in rows if r["model"] == "smollm2" and r["method"] == "rtn"}
    for r in (r for r in rows if r["model"] == "smollm2"):
        fmt = r["format"] + (f" {r['sparsity']:.0%} unstructured" if r["sparsity"] else "")
        gap = ""
        if r["format"] in rtn and r["method"] != "rtn":
            gap = f"{100 * (rtn[r['format']] - r['perplexity']) / (rtn[r['format']] - base['smollm2_perplexity']):.0f} %"
        lines.append(f"| `{fmt}` | {r['method']} | {r['perplexity']:.3f} | {gap} | {r['seconds']:.0f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "all-MiniLM-L6-v2 (fp32 source), mean cosine similarity of sentence embeddings to the original.\n",
              "| format | method | mean cosine | wall time s | peak RSS MB |", "|---|---|---:|---:|---:|"]
    for r in (r for r in rows if r["model"] == "minilm"):
        lines.append(f"| `{r['format']}` | {r['method']} | {r['mean_cosine']:.5f} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", help="run only these configurations (model:format:method[:sparsity])")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args()
    by_key = {key(c): c for c in CONFIGS}
    if args.one:
        print(json.dumps(run_one(by_key[args.one])))
        return
    chosen = args.only or list(by_key)
    unknown = [k for k in chosen if k not in by_key]
    if unknown:
        sys.exit(f"unknown configuration(s) {unknown}; known: {list(by_key)}")
    rows = []
    for k in chosen:
        done = subprocess.run([sys.executable, __file__, "--one", k], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{k} failed:\n{done.stderr}")
        rows.append(json.loads(done.stdout.splitlines()[-1]))
        print(f"{k}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    base = baselines()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"baselines": base, "rows": rows}, f, indent=1)
    print(table(rows, base))


if __name__ == "__main__":
    main()
