"""Run the reference GPTQ implementation (IST-DASLab/gptq) on our default model and data.

The reference is the original research code of Frantar et al., "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers", from the
public repository IST-DASLab/gptq (tested at commit 2d65066). Its code is NOT part
of this project and is never copied into it: obtain the repository separately, outside
the project, and pass the folder holding its `gptq.py` and `quant.py` as `--gptq-src`;
this script imports them from there at run time. Everything in this file is our own glue.

    python benchmarks/reference_gptq.py --gptq-src /path/to/IST-DASLab-gptq --bits 4 --group 128 --json ref.json

What it does, so the result can be set beside `edgec`'s own GPTQ:

* model: our default (SmolLM2-135M-Instruct, float32) from `edgec.models.loading.load_model()`;
* calibration: exactly our windows, `calibration_windows(tokenizer, --samples, --seq-len)`;
* quantization: the logic of the reference's `llama.py::llama_sequential`, re-written here
  for the transformers 5 API (see below), with the reference's `GPTQ` and `Quantizer`
  classes doing all the numerical work: `Quantizer.configure(bits, perchannel=True,
  sym=not --asym, mse=False)` and `GPTQ.fasterquant(blocksize=128, percdamp=--damp,
  groupsize=--group, actorder=--act-order, static_groups=--act-order)`;
* evaluation: exactly our evaluation, `compare_causal_lm(original, quantized,
  token_windows(tokenizer, evaluation_text(), 512, --eval-tokens), batch_size=4)`.

Linears: all seven of every decoder block. By default all are calibrated from one pass
over the block, as the reference does by default and as edgec does; with
`--true-sequential` (the reference's option of that name) one group at a time, each
group's Hessian collected with the groups before it already quantized: [k_proj, v_proj,
q_proj], [o_proj], [up_proj, gate_proj], [down_proj]. The embeddings and the (tied) lm_head are left in
float32, as the reference does.

Differences from the reference's `llama.py`, all mechanical:

* transformers 5 decoder layers take `position_embeddings` (and other keyword arguments)
  and return a tensor, not a tuple; the first layer's inputs and *all* the keyword
  arguments the model passes it are captured with a forward pre-hook
  (`with_kwargs=True`, raising to stop the forward) instead of a wrapping `Catcher`
  module, and replayed on every layer call. The model is run with `use_cache=False`.
* runs on the CPU: the reference's `fasterquant` calls `torch.cuda.synchronize()`,
  which a CPU-only torch rejects, so that one function is replaced by a no-op when
  CUDA is not available (their files are not edited).
* `static_groups` follows `--act-order` (the reference leaves it to a separate flag).
* the reference's progress prints go to stderr, so stdout holds only the summary.

Reported: quantization wall time (from the start of calibration — capturing the first
layer's inputs — to the end of the last layer; model load and evaluation excluded), the
process's peak RSS in MB both right after quantization and at the end (ru_maxrss; the
process holds the original model's deep copy, needed for the comparison, throughout),
and perplexity original/quantized, KL(original || quantized) per token and top-1
agreement from `compare_causal_lm`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import resource
import sys
import time
from pathlib import Path

import torch
from torch import nn

from edgec.calibration.windows import calibration_windows
from edgec.data import evaluation_text
from edgec.evaluation.causal_lm import compare_causal_lm, token_windows
from edgec.models.loading import load_model

# The reference's --true-sequential order for LLaMA blocks.
TRUE_SEQUENTIAL = [
    ["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"],
    ["self_attn.o_proj"],
    ["mlp.up_proj", "mlp.gate_proj"],
    ["mlp.down_proj"],
]
EVAL_SEQ_LEN = 512


class _Stop(Exception):
    pass


def _import_reference(src: str):
    folder = Path(src).resolve()
    for name in ("gptq.py", "quant.py"):
        if not (folder / name).is_file():
            sys.exit(f"--gptq-src {folder}: no {name} (fetch IST-DASLab/gptq's gptq.py and quant.py there)")
    sys.path.insert(0, str(folder))
    with contextlib.redirect_stdout(sys.stderr):  # quant.py prints when its CUDA extension is missing
        import gptq as ref_gptq
        import quant as ref_quant
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *args, **kwargs: None  # fasterquant calls it unconditionally
    return ref_gptq.GPTQ, ref_quant.Quantizer


def _linears(layer: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in layer.named_modules() if type(m) is nn.Linear}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def reference_sequential(model: nn.Module, layers: nn.ModuleList, ids: torch.Tensor, GPTQ, Quantizer,
                         args: argparse.Namespace) -> None:
    """The reference's llama_sequential (true-sequential), on the CPU, with transformers 5 layer calls."""
    nsamples, seqlen = ids.shape
    use_cache = model.config.use_cache
    model.config.use_cache = False
    dtype = next(iter(model.parameters())).dtype
    inps = torch.zeros((nsamples, seqlen, model.config.hidden_size), dtype=dtype)
    cache = {"i": 0, "kwargs": None}

    def catcher(module, hook_args, kwargs):
        kwargs = dict(kwargs)
        hidden = hook_args[0] if hook_args else kwargs.pop("hidden_states")
        inps[cache["i"]] = hidden[0]
        cache["i"] += 1
        # as in the reference, the last call's kwargs are kept (every window has the same length)
        cache["kwargs"] = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value")}
        raise _Stop

    handle = layers[0].register_forward_pre_hook(catcher, with_kwargs=True)
    try:
        for j in range(nsamples):  # the reference's dataloader yields one window per batch
            try:
                model(ids[j : j + 1], use_cache=False)
            except _Stop:
                pass
    finally:
        handle.remove()
    layer_kwargs = {**cache["kwargs"], "use_cache": False}
    outs = torch.zeros_like(inps)

    def run_layer(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        out = layer(hidden, **layer_kwargs)
        return (out[0] if isinstance(out, tuple) else out)[0]

    for i, layer in enumerate(layers):
        full = _linears(layer)
        covered = sorted(n for names in TRUE_SEQUENTIAL for n in names)
        if covered != sorted(full):
            raise RuntimeError(f"layer {i}: linears {sorted(full)} differ from the true-sequential groups {covered}")
        for names in TRUE_SEQUENTIAL if args.true_sequential else [covered]:
            subset = {n: full[n] for n in names}
            gptq = {}
            for name, module in subset.items():
                gptq[name] = GPTQ(module)
                gptq[name].quantizer = Quantizer()
                gptq[name].quantizer.configure(args.bits, perchannel=True, sym=not args.asym, mse=False)

            def add_batch(g):
                def tmp(_, inp, out):
                    g.add_batch(inp[0].data, out.data)
                return tmp

            handles = [module.register_forward_hook(add_batch(gptq[name])) for name, module in subset.items()]
            for j in range(nsamples):
                outs[j] = run_layer(layer, inps[j].unsqueeze(0))
            for h in handles:
                h.remove()

            for name, g in gptq.items():
                print(i, name, file=sys.stderr)
                with contextlib.redirect_stdout(sys.stderr):
                    g.fasterquant(blocksize=128, percdamp=args.damp, groupsize=args.group,
                                  actorder=args.act_order, static_groups=args.act_order)
                g.free()

        for j in range(nsamples):
            outs[j] = run_layer(layer, inps[j].unsqueeze(0))
        inps, outs = outs, inps

    model.config.use_cache = use_cache


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gptq-src", required=True, help="folder holding IST-DASLab/gptq's gptq.py and quant.py")
    p.add_argument("--bits", type=int, default=4, choices=[2, 3, 4, 8])
    p.add_argument("--group", type=int, default=128, help="group size; -1 = one group per row")
    p.add_argument("--asym", action="store_true", help="asymmetric grid (default symmetric)")
    p.add_argument("--act-order", action="store_true", help="activation order, with static groups")
    p.add_argument("--true-sequential", action="store_true",
                   help="the reference's --true-sequential: calibrate q/k/v, o, gate/up, down one after another "
                        "(default: all linears of a block from one pass, as the reference does by default and edgec does)")
    p.add_argument("--damp", type=float, default=0.01, help="fraction of mean(diag H) added to the diagonal")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--eval-tokens", type=int, default=16384)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    GPTQ, Quantizer = _import_reference(args.gptq_src)

    loaded = load_model()
    model = loaded.model
    original = copy.deepcopy(model)
    layers = model.model.layers  # LLaMA decoder layers, as the reference's llama.py

    tick = time.perf_counter()
    ids, _ = calibration_windows(loaded.tokenizer, args.samples, args.seq_len)
    reference_sequential(model, layers, ids, GPTQ, Quantizer, args)
    seconds = time.perf_counter() - tick
    rss_quant = _peak_rss_mb()

    windows = token_windows(loaded.tokenizer, evaluation_text(), EVAL_SEQ_LEN, args.eval_tokens)
    lm = compare_causal_lm(original, model, windows, batch_size=4, progress=False)
    rss_end = _peak_rss_mb()

    result = {
        "implementation": "IST-DASLab/gptq (reference)",
        "model": loaded.name,
        "settings": {"bits": args.bits, "group": args.group, "sym": not args.asym, "act_order": args.act_order,
                     "static_groups": args.act_order, "damp": args.damp, "blocksize": 128, "true_sequential": args.true_sequential,
                     "samples": args.samples, "seq_len": args.seq_len, "eval_tokens": args.eval_tokens,
                     "eval_seq_len": EVAL_SEQ_LEN, "threads": torch.get_num_threads()},
        "quantization_seconds": seconds,
        "peak_rss_mb_after_quantization": rss_quant,
        "peak_rss_mb": rss_end,
        "perplexity_original": lm.perplexity_original,
        "perplexity_quantized": lm.perplexity_compressed,
        "kl_mean": lm.kl_mean,
        "top1_agreement": lm.top1_agreement,
        "eval_predictions": lm.predictions,
    }
    fmt = f"int{args.bits}:g{args.group}{':asym' if args.asym else ''}{' act-order' if args.act_order else ''}"
    print(f"reference GPTQ ({fmt}) on {loaded.name}, {args.samples} x {args.seq_len} calibration tokens")
    print(f"quantization time:     {seconds:.1f} s")
    print(f"peak RSS:              {rss_quant:.0f} MB after quantization, {rss_end:.0f} MB at the end")
    print(f"perplexity original:   {lm.perplexity_original:.4f}")
    print(f"perplexity quantized:  {lm.perplexity_compressed:.4f}")
    print(f"KL (nats/token):       {lm.kl_mean:.5f}")
    print(f"top-1 agreement:       {100 * lm.top1_agreement:.2f} % ({lm.predictions} predictions)")
    if not math.isfinite(lm.perplexity_compressed):
        print("warning: the quantized perplexity is not finite", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
