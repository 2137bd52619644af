"""The runtime against transformers, ONNX Runtime and llama.cpp on the default model, in one run.

    python benchmarks/runtime.py [--json runtime.json] [--work DIR] [--threads 2]

Every configuration runs in its own process (so peak RSS is its own), on the same prompt:
the first `--prompt-len` tokens of Pride and Prejudice, then `--gen` greedy tokens.

* edgec: `edgec bench` of `.edgec` exports of SmolLM2-135M (int4:g128 with the tied
  embedding/head in fp16, in int4:g128 too, and in int8 as llama.cpp's Q4_1 file keeps it in
  Q8_0; int8 throughout), on every runtime backend present,
  the cpu backend both exact and with int8 activations (`--accuracy int8`).
* transformers fp32 (the float checkpoint), with its KV cache.
* ONNX Runtime: edgec's ONNX export of the same int4:g128 model (MatMulNBits, accuracy level 0),
  and ONNX Runtime's own int4 quantizer (block 128, symmetric) over edgec's fp32 ONNX export
  with accuracy level 4 (int8 activations).
* llama.cpp through llama-cpp-python, if installed: the model's own Q4_1 GGUF (its token
  embedding/head is Q8_0), and a Q8_0 GGUF made from it by llama.cpp's quantizer
  (`llama_model_quantize`).

Every engine runs `--rounds` times (3 by default); the table gives the medians of prefill
and decode tokens/s, time to first token, peak RSS and the fraction of the memory-bandwidth
limit (weights bytes per token against `--bandwidth-gbs`, measured once on this machine).
Then, per edgec cpu row, ratios taken within each round (the machine is shared; a neighbour's
load moves every engine of a round alike): decode and time to first token against llama.cpp
(Q4_1 for the int4 exports, Q8_0 for int8), and prefill against the faster ONNX Runtime int4
model, as the median over rounds with the lowest and highest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cli_runner import edgec

SETTINGS = {"prompt_len": 64, "gen": 128}


def child(kind: str, path: str, prompt_len: int, gen: int, threads: int) -> dict:
    """Measure one engine in this process (run as `--child KIND PATH`)."""
    import resource

    import numpy as np

    from edgec.data import evaluation_text

    text = evaluation_text()[:20 * prompt_len]
    start = time.perf_counter()
    if kind == "transformers":
        import torch

        from edgec.models.loading import load_model

        torch.set_num_threads(threads)
        loaded = load_model()
        ids = loaded.tokenizer(text, return_tensors="pt").input_ids[:, :prompt_len]
        with torch.no_grad():
            opened = time.perf_counter()
            out = loaded.model(ids, use_cache=True)
            token = out.logits[:, -1:].argmax(-1)
            past = out.past_key_values
            prefilled = time.perf_counter()
            for _ in range(gen - 1):
                out = loaded.model(token, past_key_values=past, use_cache=True)
                token, past = out.logits[:, -1:].argmax(-1), out.past_key_values
    elif kind == "onnxruntime":  # path: "MODEL.onnx:FILE.edgec", the tokenizer and config from the latter
        from edgec.exporters.onnx_validate import session
        from edgec.runtime.container import open_container
        from edgec.runtime.tokenizer import Tokenizer

        onnx_path, edgec_path = path.split(":")
        sess = session(onnx_path, threads=threads, spin=True)
        with open_container(edgec_path) as f:
            tok = Tokenizer(f.metadata.read("tokenizer.json"), f.metadata["tokenizer.config"])
            config = f.metadata["model.config"]
        ids = np.array([tok.encode(text)[:prompt_len]], np.int64)
        layers, heads, hd = config["num_hidden_layers"], config["num_key_value_heads"], config["head_dim"]
        past = {f"past_key_values.{i}.{p}": np.zeros((1, heads, 0, hd), np.float32)
                for i in range(layers) for p in ("key", "value")}
        names = [o.name for o in sess.get_outputs()]
        opened = time.perf_counter()
        feed, total = ids, ids.shape[1]
        for step in range(gen):
            t = feed.shape[1]
            outs = sess.run(None, {"input_ids": feed, "attention_mask": np.ones((1, total), np.int64),
                                   "position_ids": np.arange(total - t, total, dtype=np.int64)[None], **past})
            result = dict(zip(names, outs))
            past = {k.replace("present", "past_key_values"): v for k, v in result.items() if k.startswith("present")}
            feed = result["logits"][:, -1:].argmax(-1).astype(np.int64)
            total += 1
            if step == 0:
                prefilled = time.perf_counter()
    elif kind == "llama.cpp-quantize":  # path: "SOURCE:DEST", quantized to Q8_0
        import ctypes

        import llama_cpp

        source, dest = path.split(":")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, True, threads
        if llama_cpp.llama_model_quantize(source.encode(), dest.encode(), ctypes.byref(params)):
            raise SystemExit(f"llama.cpp could not quantize {source}")
        return {}
    elif kind == "llama.cpp":
        from llama_cpp import Llama

        llm = Llama(model_path=path, n_threads=threads, n_ctx=prompt_len + gen + 8, verbose=False)
        ids = llm.tokenize(text.encode())[:prompt_len]
        opened = time.perf_counter()
        llm.eval(ids)
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        prefilled = time.perf_counter()
        for _ in range(gen - 1):
            llm.eval([token])
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    else:
        raise SystemExit(f"unknown engine {kind}")
    done = time.perf_counter()
    return {"engine": kind, "open_s": opened - start, "first_token_s": prefilled - start,
            "prefill_tokens_per_s": prompt_len / (prefilled - opened), "decode_tokens_per_s": (gen - 1) / (done - prefilled),
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run_child(kind: str, path: Path | str, args) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(path), "--prompt-len", str(args.prompt_len),
                           "--gen", str(args.gen), "--threads", str(args.threads)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """Per edgec cpu row: decode and first token against llama.cpp at its bits, prefill against the faster ORT int4."""
    by_model = {r["model"]: r for r in rows if r["engine"] in ("llama.cpp", "onnxruntime")}
    ort = [by_model[m] for m in ("int4:g128 (ONNX)", "ORT int4, level 4") if m in by_model]
    out = {}
    for r in rows:
        if not r["engine"].startswith("edgec cpu"):
            continue
        got = {}
        llama = by_model.get("Q8_0 GGUF" if r["model"].startswith("int8") else "Q4_1 GGUF")
        if llama:
            got[f"decode / llama.cpp {llama['model']}"] = r["decode_tokens_per_s"] / llama["decode_tokens_per_s"]
            got[f"first token / llama.cpp {llama['model']}"] = r["first_token_s"] / llama["first_token_s"]
        if ort:
            got["prefill / best ORT int4"] = r["prefill_tokens_per_s"] / max(o["prefill_tokens_per_s"] for o in ort)
        out[(r["engine"], r["model"])] = got
    return out


def one_round(args, work: Path) -> list[dict]:
    """Every engine once, each in its own process."""
    from edgec.models.embedded import EMBEDDED
    from edgec.runtime.backends import available_backends

    rows = []
    for name, path in EDGEC_FILES.items():
        for backend in (b for b, why in available_backends().items() if why is None):
            for accuracy in ("exact", "int8") if backend == "cpu" else ("exact",):
                done, _, _ = edgec("bench", str(work / path), "--backend", backend, "--accuracy", accuracy,
                                   "--threads", str(args.threads),
                                   "--prompt-len", str(args.prompt_len), "--gen", str(args.gen), "--json")
                r = json.loads(done.stdout)
                engine = f"edgec {backend}" + (" a8" if accuracy == "int8" else "")
                rows.append({"engine": engine, "model": name, **r, "weights_bytes": r["weights_file_bytes"]})
    rows.append({**run_child("transformers", "-", args), "model": "fp32", "weights_bytes": 538_060_000})
    for model, onnx_path in [("int4:g128 (ONNX)", work / "int4.onnx"), ("ORT int4, level 4", work / "ort-int4-level4.onnx")]:
        rows.append({**run_child("onnxruntime", f"{onnx_path}:{work / 'int4.edgec'}", args), "model": model,
                     "weights_bytes": onnx_path.stat().st_size})
    if has_llama_cpp():
        for model, gguf in [("Q4_1 GGUF", EMBEDDED["smollm2"].path()), ("Q8_0 GGUF", work / "q8_0.gguf")]:
            rows.append({**run_child("llama.cpp", gguf, args), "model": model, "weights_bytes": gguf.stat().st_size})
    return rows


EDGEC_FILES = {"int4:g128": "int4.edgec", "int4:g128, head too": "int4-head.edgec",
               "int4:g128, head int8": "int4-head8.edgec", "int8, head too": "int8-head.edgec"}


def has_llama_cpp() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_files(args, work: Path) -> None:
    """The exports, ONNX Runtime's own int4 model and the Q8_0 GGUF, unless already in `work`."""
    from edgec.models.embedded import EMBEDDED

    exports = {  # file -> export arguments
        "int4.edgec": ["--format", "int4:g128", "--to", "edgec", "--to", "onnx", "-o", str(work / "int4")],
        "fp32.onnx": ["--to", "onnx", "-o", str(work / "fp32.onnx")],
        "int4-head.edgec": ["--format", "int4:g128", "--include-head", "--to", "edgec", "-o", str(work / "int4-head.edgec")],
        "int4-head8.edgec": ["--format", "int4:g128", "--head-format", "int8", "--to", "edgec",
                             "-o", str(work / "int4-head8.edgec")],
        "int8-head.edgec": ["--format", "int8", "--include-head", "--to", "edgec", "-o", str(work / "int8-head.edgec")],
    }
    for name, export_args in exports.items():
        if not (work / name).exists():
            edgec("export", *export_args)
    if not (work / "ort-int4-level4.onnx").exists():
        from edgec.exporters.onnx_baseline import ort_int4_baseline

        ort_int4_baseline(work / "fp32.onnx", work / "ort-int4-level4.onnx", accuracy_level=4)
    if has_llama_cpp() and not (work / "q8_0.gguf").exists():
        run_child("llama.cpp-quantize", f"{EMBEDDED['smollm2'].path()}:{work / 'q8_0.gguf'}", args)
    elif not has_llama_cpp():
        print("llama.cpp: llama-cpp-python is not installed (pip install llama-cpp-python builds it from source)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every engine; medians are reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-len", type=int, default=SETTINGS["prompt_len"])
    parser.add_argument("--gen", type=int, default=SETTINGS["gen"])
    parser.add_argument("--bandwidth-gbs", type=float, default=46.0, help="this machine's memory bandwidth")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.prompt_len, args.gen, args.threads)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="edgec-runtime-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare_files(args, work)
    rounds = [one_round(args, work) for _ in range(args.rounds)]
    metrics = ("prefill_tokens_per_s", "decode_tokens_per_s", "first_token_s", "peak_rss")
    rows = [{**first, **{k: statistics.median(r[i][k] for r in rounds) for k in metrics}}
            for i, first in enumerate(rounds[0])]
    print(f"SmolLM2-135M, {args.threads} threads, {args.prompt_len}-token prompt, {args.gen} greedy tokens; "
          f"medians of {args.rounds} rounds\n")
    print(f"{'engine':<18}{'model':<24}{'prefill tok/s':>14}{'decode tok/s':>14}{'1st token ms':>14}"
          f"{'peak RSS MB':>13}{'of BW limit':>12}")
    for r in rows:
        limit = args.bandwidth_gbs * 1e9 / r["weights_bytes"]
        print(f"{r['engine']:<18}{r['model']:<24}{r['prefill_tokens_per_s']:>14.1f}{r['decode_tokens_per_s']:>14.1f}"
              f"{1e3 * r['first_token_s']:>14.1f}{r['peak_rss'] / 1e6:>13.1f}{r['decode_tokens_per_s'] / limit:>12.1%}")
    per_round = [ratios(r) for r in rounds]
    print("\nratios, each taken within one round: median (lowest .. highest)")
    summary = {}
    for key, named in per_round[0].items():
        parts = []
        for what in named:
            values = [pr[key][what] for pr in per_round]
            summary[f"{key[0]} | {key[1]} | {what}"] = values
            parts.append(f"{what} x{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})")
        print(f"{key[0]:<14}{key[1]:<22}" + "; ".join(parts))
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json), "work": str(work)},
                                         "rows": rows, "rounds": rounds, "ratios": summary}, indent=1, default=str))


if __name__ == "__main__":
    main()
