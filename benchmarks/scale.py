"""The toolchain at the sizes users deploy: wall time and peak memory of each step, 135M against 1.2B parameters.

    python benchmarks/scale.py --work /tmp/scale --json scale.json > scale.md

Models: the embedded SmolLM2-135M, and a LLaMA with Llama 3.2 1B's shapes (16 blocks, hidden
2048, MLP 8192, 32 query and 8 key-value heads, 128,256-token vocabulary, tied embedding,
llama3 rotary scaling; 1.24B parameters) and random weights (seed 0, the initializer's
N(0, 0.02)), saved in bfloat16 as such checkpoints are, with SmolLM2's tokenizer. It is built
under --work on the first run and reused after.

Steps, each a fresh `edgec` process timed by /usr/bin/time (wall seconds, peak RSS), with an
empty cache folder per model (EDGEC_CACHE_DIR) and the sensitivity cache emptied before
each plan, so nothing leans on an earlier run:

* load: a first load (for SmolLM2, the GGUF's conversion to a cached checkpoint);
* compress rtn / gptq: `edgec compress --format int4:g128 --method rtn|gptq`;
* plan rtn / auto: `edgec plan --device host --methods rtn|auto` (auto on SmolLM2 only: on the
  1.2B model it runs GPTQ for every candidate of every unit);
* export: `edgec export --format int4:g128 --to edgec`;
* eval: `edgec eval --format int4:g128 --max-tokens 4096` (perplexity, KL and top-1 of the RTN
  copy on 4,096 tokens of Pride and Prejudice).

The limit the toolchain is held to: compress, plan and eval at most the model's 16-bit size
plus 2 GB of peak RSS. Figures are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from cli_runner import timed

from edgec.planner.sizes import parse_size

GB = 1e9
HEADROOM = 2 * GB
BOUNDED = ("compress rtn", "compress gptq", "plan rtn", "plan auto", "eval")


def llama_1b_folder(work: Path) -> Path:
    """The random LLaMA with Llama 3.2 1B's shapes, in bfloat16 (built once under `work`)."""
    path = work / "llama-1b-random"
    if (path / "model.safetensors").exists():
        return path
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgec.models.loading import load_model

    config = LlamaConfig(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        bos_token_id=1, eos_token_id=2, dtype="bfloat16")
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    staging = work / "llama-1b-random.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    load_model("smollm2").tokenizer.save_pretrained(staging)
    staging.rename(path)
    return path


def parameter_count(spec: str) -> int:
    """Parameters of a model, tied ones once (loaded here without reading the weights' pages)."""
    from edgec.models.loading import load_model

    return sum(p.numel() for p in load_model(spec, keep_16bit=True).model.parameters())


def run_model(name: str, spec: str, work: Path, auto_plan: bool) -> dict:
    """Every step on one model: {step: {seconds, peak_rss}}, and compress gptq's own memory estimate."""
    cache = work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    env = {"EDGEC_CACHE_DIR": str(cache)}
    out = work / f"out-{name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    steps: dict[str, dict] = {}

    def step(label: str, command: list[str]) -> str:
        shutil.rmtree(cache / "sensitivity", ignore_errors=True)
        done, seconds, rss = timed(command, env=env)
        steps[label] = {"seconds": seconds, "peak_rss": rss}
        print(f"  {name} {label}: {seconds:.1f} s, peak RSS {rss / GB:.2f} GB", file=sys.stderr, flush=True)
        return done.stderr

    cli = [sys.executable, "-m", "edgec"]
    step("load", [sys.executable, "-c", f"from edgec.models.loading import load_model; load_model({spec!r})"])
    step("compress rtn", [*cli, "compress", "--model", spec, "--format", "int4:g128", "--method", "rtn",
                          "-o", str(out / "rtn")])
    log = step("compress gptq", [*cli, "compress", "--model", spec, "--format", "int4:g128", "--method", "gptq",
                                 "-o", str(out / "gptq")])
    estimate = re.search(r"expected: about (\S+) and ([0-9.]+ [kMG]?B) of memory on the host", log)
    step("plan rtn", [*cli, "plan", "--device", "host", "--model", spec, "--methods", "rtn",
                      "-o", str(out / "plan-rtn.json")])
    if auto_plan:
        step("plan auto", [*cli, "plan", "--device", "host", "--model", spec, "--methods", "auto",
                           "-o", str(out / "plan-auto.json")])
    step("export", [*cli, "export", "--model", spec, "--format", "int4:g128", "--to", "edgec",
                    "-o", str(out / "model.edgec")])
    step("eval", [*cli, "eval", "--model", spec, "--format", "int4:g128", "--max-tokens", "4096"])
    shutil.rmtree(out)
    return {"steps": steps, "gptq_estimate": parse_size(estimate.group(2)) if estimate else None,
            "gptq_time_estimate": estimate.group(1) if estimate else None}


def report(results: dict) -> str:
    """The figures as markdown: per step, each model's time and peak RSS, and how they grow with parameters."""
    small, large = results["smollm2"], results["llama-1b"]
    growth = large["parameters"] / small["parameters"]
    lines = [f"Parameters: SmolLM2 {small['parameters'] / 1e6:.0f}M, random LLaMA {large['parameters'] / 1e9:.2f}B "
             f"({growth:.1f}x). Limit for compress, plan and eval: the 16-bit size plus 2 GB "
             f"({(2 * small['parameters'] + HEADROOM) / GB:.2f} GB and {(2 * large['parameters'] + HEADROOM) / GB:.2f} GB).",
             "",
             "| step | SmolLM2 s | SmolLM2 peak RSS GB | 1.2B s | 1.2B peak RSS GB | 1.2B within limit | time growth |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for label in small["steps"]:
        a, b = small["steps"][label], large["steps"].get(label)
        if b is None:
            lines.append(f"| {label} | {a['seconds']:.1f} | {a['peak_rss'] / GB:.2f} | — | — | — | — |")
            continue
        limit = 2 * large["parameters"] + HEADROOM
        within = ("yes" if b["peak_rss"] <= limit else "**no**") if label in BOUNDED else "(not bounded)"
        lines.append(f"| {label} | {a['seconds']:.1f} | {a['peak_rss'] / GB:.2f} | {b['seconds']:.1f} | "
                     f"{b['peak_rss'] / GB:.2f} | {within} | {b['seconds'] / a['seconds']:.1f}x |")
    for name in ("smollm2", "llama-1b"):
        r = results[name]
        if r["gptq_estimate"]:
            lines.append(f"\n{name}: compress gptq estimated its peak at {r['gptq_estimate'] / GB:.2f} GB before work; "
                         f"measured {r['steps']['compress gptq']['peak_rss'] / GB:.2f} GB.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="Folder for the 1.2B model, caches and outputs.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    large = llama_1b_folder(args.work)
    results = {}
    for name, spec, auto in (("smollm2", "smollm2", True), ("llama-1b", str(large), False)):
        results[name] = {"parameters": parameter_count(spec), **run_model(name, spec, args.work, auto)}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(report(results))


if __name__ == "__main__":
    main()
