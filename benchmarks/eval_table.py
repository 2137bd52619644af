"""Quality of every weight format on both real models, as the table in docs/evaluation.md.

    python benchmarks/eval_table.py --json results.json --plot docs/eval-formats.png > table.md

Each row is one `edgec eval --format F` (round-to-nearest, head and embeddings
kept) with the CLI's default settings; the original is re-evaluated on the same
windows in every row. Needs matplotlib for --plot.
"""

from __future__ import annotations

import argparse
import json
import sys

from edgec.evaluation.run import EvalSettings, evaluate
from edgec.models.loading import load_model

SMOLLM2_FORMATS = ["fp16", "bf16", "int8", "fp8", "int4:g32:asym", "int4:g32", "int4:g64", "int4:g128",
                   "int4:g128:asym", "nf4:g32", "nf4:g64", "int3:g64:asym", "int3:g128", "int3:g128:asym",
                   "2:4", "2:4+int8", "2:4+int4:g128"]
MINILM_FORMATS = ["fp16", "bf16", "int8", "fp8", "int4:g32", "int4:g64", "int4:g128", "int4:g128:asym", "nf4:g32",
                  "nf4:g64", "int3:g128", "int3:g128:asym", "2:4", "2:4+int8", "2:4+int4:g128"]
# Formats that SmolLM2's Q4_1 source grid makes lossless by construction: never headline them.
FLATTERED = {"int4:g32:asym"}


def run(alias: str, formats: list[str]) -> list[dict]:
    loaded = load_model(alias)
    rows = []
    for fmt in formats:
        report = evaluate(loaded, EvalSettings(format=fmt, progress=False))
        rows.append(report.to_dict())
        print(f"{alias} {fmt}: done in {report.seconds:.0f} s", file=sys.stderr, flush=True)
    return rows


def lm_table(rows: list[dict]) -> str:
    base = rows[0]["lm"]["perplexity_original"]
    out = [f"Original (fp32): perplexity {base:.3f}, {rows[0]['bytes_original'] / 1e6:.1f} MB of weights.\n",
           "| format | bits/weight (linears) | weights MB | perplexity | Δ ppl | KL (nats/token) | top-1 agreement |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lm = r["lm"]
        mark = " †" if r["format"] in FLATTERED else ""
        out.append(f"| `{r['format']}`{mark} | {r['linear_bits_per_weight']:.3f} | {r['bytes_compressed'] / 1e6:.1f} | "
                   f"{lm['perplexity_compressed']:.3f} | {100 * (lm['perplexity_compressed'] / base - 1):+.2f} % | "
                   f"{lm['kl_mean']:.4f} | {100 * lm['top1_agreement']:.2f} % |")
    return "\n".join(out)


def encoder_table(rows: list[dict]) -> str:
    out = [f"Original (fp32): {rows[0]['bytes_original'] / 1e6:.1f} MB of weights, "
           f"{rows[0]['encoder']['sentences']} sentences.\n",
           "| format | bits/weight (linears) | weights MB | mean cosine | min cosine |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        enc = r["encoder"]
        out.append(f"| `{r['format']}` | {r['linear_bits_per_weight']:.3f} | {r['bytes_compressed'] / 1e6:.1f} | "
                   f"{enc['mean_cosine']:.5f} | {enc['min_cosine']:.4f} |")
    return "\n".join(out)


def plot(lm_rows: list[dict], enc_rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for r in lm_rows:
        color = "tab:gray" if r["format"] in FLATTERED else "tab:blue"
        a.scatter(r["linear_bits_per_weight"], r["lm"]["kl_mean"], color=color)
        a.annotate(r["format"] + (" †" if r["format"] in FLATTERED else ""),
                   (r["linear_bits_per_weight"], r["lm"]["kl_mean"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
    a.set(xlabel="bits per weight (linears)", ylabel="KL to original (nats/token, log)", yscale="symlog",
          title="SmolLM2-135M-Instruct, RTN († flattered by the Q4_1 source grid)")
    a.set_yscale("symlog", linthresh=1e-3)
    for r in enc_rows:
        b.scatter(r["linear_bits_per_weight"], 1 - r["encoder"]["mean_cosine"], color="tab:green")
        b.annotate(r["format"], (r["linear_bits_per_weight"], 1 - r["encoder"]["mean_cosine"]), fontsize=8,
                   xytext=(4, 2), textcoords="offset points")
    b.set(xlabel="bits per weight (linears)", ylabel="1 - mean cosine to original (log)", yscale="log",
          title="all-MiniLM-L6-v2 (fp32 source), RTN")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--json", help="also write all reports to this JSON file")
    parser.add_argument("--plot", help="also draw bits/weight against loss to this PNG")
    args = parser.parse_args()
    lm_rows = run("smollm2", SMOLLM2_FORMATS)
    enc_rows = run("minilm", MINILM_FORMATS)
    print("### SmolLM2-135M-Instruct (perplexity on Pride and Prejudice)\n")
    print(lm_table(lm_rows))
    print("\n### all-MiniLM-L6-v2 (sentence-embedding cosine similarity to the fp32 original)\n")
    print(encoder_table(enc_rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"smollm2": lm_rows, "minilm": enc_rows}, f, indent=1)
    if args.plot:
        plot(lm_rows, enc_rows, args.plot)


if __name__ == "__main__":
    main()
