"""The triton backend's decode loop on a GPU: captured as a CUDA graph against run eagerly, and against transformers.

    python benchmarks/gpu_decode.py [--json decode.json] [--work DIR] [--prompt-len 128] [--gen 128]
    TRITON_INTERPRET=1 python benchmarks/gpu_decode.py --quick   # checks the script on CPU; not figures

Builds a random-weight LLaMA with SmolLM2-135M's shapes (transformers, a small tokenizer trained on
the packaged text; `--quick`: two small layers) and exports it as int4:g128 (`edgec export`).
Then, in this process and on the same device:

* edgec bench's measurement (`run_bench`: the cold first token apart, then warm prefill and
  decode after a warm-up) on the triton backend with `EDGEC_CUDA_GRAPHS=1` and `=0`, and the
  greedy tokens of both, which must agree;
* Hugging Face transformers in float16 (float32 on a CPU), eager, greedy, with its KV cache:
  decode tokens/s from the difference between generating 1 and `--gen` tokens, after a warm-up.

Prints the tokens/s and the ratios the decode targets name: captured decode ≥ 500 tokens/s on an
H100/H200-class GPU and ≥ 5x transformers float16 eager on the same GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def small_tokenizer():
    """A 1,000-token byte-level BPE trained on the packaged evaluation text: a GPU machine need not have the default
    model's package, and the prompt is token ids anyway."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from edgec.data import evaluation_text

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([evaluation_text()[:50_000]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def build_model(folder: Path, quick: bool) -> Path:
    """A random-weight LLaMA of SmolLM2-135M's shapes, its 49,152-token vocabulary included (or a two-layer small
    one), with `small_tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = small_tokenizer()
    shapes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16) if quick else dict(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        head_dim=64)
    config = LlamaConfig(vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, rope_theta=100000.0, **shapes)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def transformers_decode(folder: Path, prompt: list[int], generate: int) -> dict:
    """Transformers' eager greedy decoding of the model on the GPU (float16) or the CPU (float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager").to(device).eval()
    ids = torch.tensor([prompt], device=device)

    def seconds(new_tokens: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    seconds(4)  # warm-up
    first, whole = seconds(1), seconds(generate)
    return {"device": device, "dtype": str(dtype).removeprefix("torch."),
            "decode_tokens_per_s": (generate - 1) / (whole - first), "first_token_s": first}


def edgec_decode(path: Path, prompt: list[int], generate: int, graphs: bool) -> tuple[dict, list[int]]:
    """`run_bench` on the triton backend with CUDA graphs on or off, and the greedy tokens it decodes."""
    import numpy as np

    from edgec.bench import run_bench
    from edgec.runtime import load

    os.environ["EDGEC_CUDA_GRAPHS"] = "1" if graphs else "0"
    result = run_bench(str(path), prompt, generate, backend="triton")
    model = load(str(path), backend="triton")
    cache = model.new_cache()
    tokens = [int(np.argmax(model.forward(prompt, cache)[-1]))]
    for _ in range(min(generate, 32) - 1):
        tokens.append(int(np.argmax(model.forward(tokens[-1:], cache)[-1])))
    return dataclasses.asdict(result), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--work", default=None, help="folder for the model and its export (default: a temporary one)")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--gen", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a two-layer model and few tokens: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.prompt_len, args.gen = 9, 6
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if interpreted:
        print("TRITON_INTERPRET=1: checking the script only; these timings are not figures", flush=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="edgec-gpu-decode-"))
    folder = work / "llama-smollm2-shapes"
    shutil.rmtree(folder, ignore_errors=True)
    build_model(folder, args.quick)
    exported = work / "model.edgec"
    exported.unlink(missing_ok=True)
    # a plain subprocess: a GPU machine's image may lack /usr/bin/time, which the other benchmarks' runner uses
    subprocess.run([sys.executable, "-m", "edgec", "export", "--model", str(folder), "--format", "int4:g128", "--to",
                    "edgec", "-o", str(exported)], check=True)
    prompt = [(17 * i + 3) % 40000 + 100 for i in range(args.prompt_len)]

    graphed, graphed_tokens = edgec_decode(exported, prompt, args.gen, graphs=True)
    eager, eager_tokens = edgec_decode(exported, prompt, args.gen, graphs=False)
    baseline = transformers_decode(folder, prompt, args.gen)
    results = {"interpreted": interpreted, "prompt_tokens": args.prompt_len, "generated_tokens": args.gen,
               "edgec_graphs": graphed, "edgec_eager": eager, "transformers": baseline,
               "tokens_agree": graphed_tokens == eager_tokens}
    name = "transformers " + baseline["dtype"] + " eager"
    if baseline["device"] != "cuda":
        print("no GPU: both edgec rows run the same eager step (graphs are captured only on a GPU)")
    print(f"{'engine':>32} {'decode tok/s':>13} {'prefill tok/s':>14} {'first token s':>14}")
    for label, row in (("edgec triton, CUDA graphs", graphed), ("edgec triton, eager", eager)):
        print(f"{label:>32} {row['decode_tokens_per_s']:13.1f} {row['prefill_tokens_per_s']:14.1f} "
              f"{row['first_token_s']:14.2f}")
    print(f"{name:>32} {baseline['decode_tokens_per_s']:13.1f} {'':>14} {baseline['first_token_s']:14.2f}")
    speedup = graphed["decode_tokens_per_s"] / baseline["decode_tokens_per_s"]
    print(f"captured decode: {graphed['decode_tokens_per_s']:.0f} tokens/s (target >= 500 on an H100/H200), "
          f"x{graphed['decode_tokens_per_s'] / eager['decode_tokens_per_s']:.2f} the eager loop, "
          f"x{speedup:.2f} {name} (target >= 5); greedy tokens agree: {results['tokens_agree']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if not results["tokens_agree"]:
        sys.exit("the captured and the eager decode disagree")


if __name__ == "__main__":
    main()
