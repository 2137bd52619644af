"""The planner on the default model: plans against every uniform format, predicted against real loss.

    python benchmarks/planner.py --json planner.json --plot docs/planner-frontier.png > planner.md

`--state FILE` keeps every finished step (plan timings, base plans, each compressed model's
figures) and skips it when run again: the whole benchmark takes about an hour on 2 cores.

For `rtx4090` and `host`:

1. `edgec plan` wall time, cold (empty sensitivity cache) and cached (rtx4090 first; host
   then only measures the candidates rtx4090 lacked).
2. Every uniform format the devices run, compressed by `edgec compress --format F --method M`
   with the method the planner pairs with F (GPTQ 2-4 bit, SparseGPT 2:4, RTN 8 bit), with the
   head (and the embedding tied to it) in 16 bit, and again with it in F too (`--include-head`).
3. Plans at the exact bytes of the uniform int3:g128, int4:g128, nf4:g64 and int8 models and
   of int4:g128 and int8 with the head, and one at the predicted decode time of uniform
   int4:g128 on each device, each compressed by `edgec compress --plan`.

Every compressed model is scored against the original on the first 16,384 tokens of Pride and
Prejudice (perplexity and KL(original || compressed), as `edgec eval`); compression's peak RSS
(/usr/bin/time) is printed beside the planner's estimate. Spearman correlation of predicted and
real KL is taken over all compressed models per device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from cli_runner import edgec

DEVICES = ("rtx4090", "host")
BUDGET_FORMATS = ("int3:g128", "int4:g128", "nf4:g64", "int8")
HEAD_BUDGET_FORMATS = ("int4:g128", "int8")  # and at the bytes of these with the head (and tied embedding) in them
LATENCY_FORMAT = "int4:g128"
EVAL_TOKENS = 16384


def score(original, folder: Path, windows) -> dict:
    from edgec.evaluation.causal_lm import compare_causal_lm
    from edgec.models.loading import load_model

    compressed = load_model(folder)
    got = compare_causal_lm(original, compressed.model, windows, progress=False)
    return {"perplexity": got.perplexity_compressed, "kl": got.kl_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--plot", help="draw predicted and real loss against bytes to this PNG")
    parser.add_argument("--state", help="resume from / save finished steps to this JSON file")
    args = parser.parse_args()
    state_path = Path(args.state) if args.state else None
    state = json.loads(state_path.read_text()) if state_path and state_path.exists() else {}
    state.setdefault("timing", {})
    state.setdefault("plans", {})
    state.setdefault("runs", {})

    def save() -> None:
        if state_path:
            state_path.write_text(json.dumps(state, indent=1))

    from scipy.stats import spearmanr

    from edgec.core.formats import parse_format
    from edgec.data import evaluation_text
    from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
    from edgec.models.loading import load_model
    from edgec.planner.compress_memory import compress_peak, plan_layers
    from edgec.planner.plan import Constraints, PlanSettings, make_plan, point, prepare, uniform_choices
    from edgec.planner.plan_schema import plan_json, validate_plan
    from edgec.planner.profiles import load_profile
    from edgec.planner.sensitivity import SensitivityCache
    from edgec.planner.units import method_for

    work = Path(state["work"]) if Path(state.get("work", "/nonexistent")).is_dir() else \
        Path(tempfile.mkdtemp(prefix="edgec-planner-bench-"))
    state["work"] = str(work)  # the sensitivity cache of the timed plans lives there
    env = {"EDGEC_CACHE_DIR": str(work / "cache")}
    gguf = Path(os.environ.get("EDGEC_CACHE_DIR", Path.home() / ".cache" / "edgec")) / "gguf"
    # keep the float checkpoint of the default model: its conversion is not planning
    if gguf.is_dir() and not (work / "cache" / "gguf").exists():
        (work / "cache").mkdir()
        (work / "cache" / "gguf").symlink_to(gguf)
    timing = state["timing"]
    for device in DEVICES:
        for run in ("first", "cached"):
            if f"{device} {run}" in timing:
                continue
            done, seconds, rss = edgec("plan", "--device", device, "-o", str(work / f"{device}.json"), "--json", env=env)
            timing[f"{device} {run}"] = {"seconds": seconds, "peak_rss": rss}
            state["plans"][device] = json.loads(done.stdout)
            save()
            print(f"edgec plan --device {device} ({run}): {seconds:.1f} s", file=sys.stderr, flush=True)

    loaded = load_model(None)
    windows = token_windows(loaded.tokenizer, evaluation_text(), 512, EVAL_TOKENS)
    base = compare_causal_lm(loaded.model, None, windows, progress=False).perplexity_original
    settings = PlanSettings()
    os.environ["EDGEC_CACHE_DIR"] = env["EDGEC_CACHE_DIR"]
    runs: dict[str, dict] = state["runs"]  # request signature -> compressed model's figures

    def compressed(name: str, cli_args: list[str], signature: str, estimate: int | None) -> dict:
        if signature not in runs:
            out = work / f"model-{len(runs)}"
            _, seconds, rss = edgec("compress", *cli_args, "-o", str(out))
            runs[signature] = {**score(loaded.model, out, windows), "compress_seconds": seconds, "compress_peak_rss": rss,
                               "compress_peak_estimate": estimate}
            save()
            print(f"{name}: {json.dumps(runs[signature])}", file=sys.stderr, flush=True)
        return runs[signature]

    results = {}
    for device in DEVICES:
        profile = load_profile(device)
        inputs = prepare(loaded, profile, settings, SensitivityCache(), progress=False)
        base_plan = validate_plan(state["plans"][device], f"{device}.json")
        rows = []
        for key, choice in uniform_choices(inputs).items():
            fmt = parse_format(key.split("@")[0])
            if fmt.family in ("fp16", "bf16"):
                continue
            cli = ["--format", str(fmt), "--method", method_for(fmt, "auto", False)]
            cli += ["--include-head"] if key.endswith("+head") else []
            real = compressed(f"uniform {key}", cli, f"uniform {key}", None)
            rows.append({"kind": "uniform", "name": key, **point(inputs, choice), **real})
        uniform = {r["name"]: r for r in rows}

        def uniform_of(text: str, head: str = "") -> tuple[str, dict]:
            name = f"{text}@{method_for(parse_format(text), 'auto', False)}{head}"
            return name, uniform[name]

        budgets = [("bytes", *uniform_of(f)) for f in BUDGET_FORMATS]
        budgets += [("bytes", *uniform_of(f, "+head")) for f in HEAD_BUDGET_FORMATS]
        budgets.append(("decode_ms", *uniform_of(LATENCY_FORMAT)))
        # the CLI measured the loaded process's RSS for its estimate: recover it from the default plan's
        loaded_rss = base_plan.totals.compress_peak_bytes - compress_peak(loaded, plan_layers(base_plan), 0).host_bytes
        for resource, like, target in budgets:
            limit = target[resource]
            constraints = Constraints(memory_bytes=limit) if resource == "bytes" else Constraints(latency_ms=limit)
            plan = make_plan(loaded, profile, inputs, constraints, settings)
            path = work / f"{device}-{len(rows)}.json"
            path.write_text(json.dumps(plan_json(plan)))
            signature = json.dumps({n: (e.format, e.method) for n, e in sorted(plan.layers.items())})
            flag = "--memory" if resource == "bytes" else "--latency-ms"
            real = compressed(f"{device} plan {flag} = uniform {like}", ["--plan", str(path)], signature,
                              compress_peak(loaded, plan_layers(plan), loaded_rss).host_bytes)
            t = plan.totals
            rows.append({"kind": "plan", "name": f"{flag} = uniform {like}", "bytes": t.weights_bytes,
                         "loss": t.predicted_loss, "decode_ms": t.decode_ms, "budget": [resource, limit],
                         "formats": sorted({u.format for u in plan.units}), **real})
        rho = spearmanr([r["loss"] for r in rows], [r["kl"] for r in rows]).statistic
        plans = [r for r in rows if r["kind"] == "plan"]
        rho_plans = spearmanr([r["loss"] for r in plans], [r["kl"] for r in plans]).statistic
        results[device] = {"rows": rows, "spearman_all": rho, "spearman_plans": rho_plans,
                           "sensitivity_prediction_error": inputs.table.prediction_error,
                           "measured_losses": inputs.table.measured_losses, "entries": len(inputs.table.errors)}
    report = {"original_perplexity": base, "timing": timing, "devices": results}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(render(report))
    if args.plot:
        plot(report, Path(args.plot))


def render(report: dict) -> str:
    lines = [f"SmolLM2-135M-Instruct, original perplexity {report['original_perplexity']:.3f} "
             f"({EVAL_TOKENS:,} tokens of Pride and Prejudice).", ""]
    lines += ["| planner run | wall s | peak RSS MB |", "|---|---:|---:|"]
    for run, v in report["timing"].items():
        rss = "" if v["peak_rss"] is None else f"{v['peak_rss'] / 1e6:.0f}"
        lines.append(f"| `edgec plan --device {run}` | {v['seconds']:.1f} | {rss} |")
    for device, res in report["devices"].items():
        rows = res["rows"]
        lines += ["", f"### {device}", "",
                  "| model | MB | decode ms (pred.) | KL pred. | KL real | perplexity | best uniform within budget "
                  "| its perplexity | compress peak MB (est.) |",
                  "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
        uniforms = [r for r in rows if r["kind"] == "uniform"]
        for r in rows:
            best = "| | "
            if r["kind"] == "plan":  # the best uniform model within the plan's budget
                resource, limit = r["budget"]
                b = min((u for u in uniforms if u[resource] <= limit * (1 + 1e-9)), key=lambda u: u["perplexity"])
                best = f"| {b['name']} | {b['perplexity']:.3f} "
            est = f" ({r['compress_peak_estimate'] / 1e6:.0f})" if r.get("compress_peak_estimate") else ""
            name = f"plan {r['name']} ({', '.join(r['formats'])})" if r["kind"] == "plan" else f"uniform {r['name']}"
            lines.append(f"| {name} | {r['bytes'] / 1e6:.1f} | {r['decode_ms']:.3f} | {r['loss']:.4f} | {r['kl']:.4f} | "
                         f"{r['perplexity']:.3f} {best}| {r['compress_peak_rss'] / 1e6:.0f}{est} |")
        lines += ["", f"Spearman(predicted KL, real KL): {res['spearman_all']:.3f} over all {len(rows)} models, "
                      f"{res['spearman_plans']:.3f} over the plans alone; sensitivity: {res['measured_losses']} of "
                      f"{res['entries']} (unit, candidate) losses measured, the rest predicted with median error "
                      f"{100 * res['sensitivity_prediction_error']:.0f} %."]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(report["devices"]), figsize=(6.5 * len(report["devices"]), 4.8), squeeze=False)
    for ax, (device, res) in zip(axes[0], report["devices"].items()):
        for kind, marker, color in (("uniform", "s", "C1"), ("plan", "*", "C3")):
            rows = [r for r in res["rows"] if r["kind"] == kind]
            ax.scatter([r["bytes"] / 1e6 for r in rows], [r["loss"] for r in rows], marker=marker, s=70, color=color,
                       facecolors="none", label=f"{kind}: predicted KL")
            ax.scatter([r["bytes"] / 1e6 for r in rows], [r["kl"] for r in rows], marker=marker, s=70, color=color,
                       label=f"{kind}: real KL")
            for r in rows:
                if kind == "uniform":
                    ax.annotate(r["name"].split("@")[0], (r["bytes"] / 1e6, r["kl"]), fontsize=7, xytext=(4, 3),
                                textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("weights (MB)")
        ax.set_ylabel("KL to the original (nats/token)")
        ax.set_title(f"{device}: Spearman {res['spearman_all']:.2f}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
