"""Generate text from an edgec ONNX export with ONNX Runtime, numpy and tokenizers alone.

    edgec export --format int4:g128 --to onnx -o smollm2/model.onnx
    pip install onnxruntime tokenizers numpy      # all this script needs
    python examples/onnx_generate.py smollm2/model.onnx "It is a truth universally acknowledged" 32

Greedy decoding with the KV cache: one prefill step over the prompt, then one step per
token, stopping at an end-of-sequence id of generation_config.json. It prints what
`edgec run` prints (greedy, its default) for the same compressed model and prompt.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def generate(model_path: Path, prompt: str, max_new_tokens: int) -> str:
    """The greedy continuation of `prompt`, at most `max_new_tokens` tokens, special tokens left out."""
    folder = model_path.parent  # the export writes the tokenizer and generation config beside the model
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    eos = set(json.loads((folder / "generation_config.json").read_text())["eos_token_id"])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    # past_key_values.N.key/.value: (batch, kv_heads, past_length, head_dim); empty before the first step
    past = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
            for i in session.get_inputs() if i.name.startswith("past_key_values.")}
    outputs = [o.name for o in session.get_outputs()]

    prompt_ids = tokenizer.encode(prompt).ids
    step, done, generated = prompt_ids, 0, []
    while len(generated) < max_new_tokens:
        total = done + len(step)
        results = session.run(None, {
            "input_ids": np.array([step], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            "position_ids": np.arange(done, total, dtype=np.int64)[None],
            **past,
        })
        named = dict(zip(outputs, results))
        token = int(named["logits"][0, -1].argmax())
        if token in eos:
            break
        generated.append(token)
        past = {name: named[name.replace("past_key_values.", "present.")] for name in past}
        step, done = [token], total
    return tokenizer.decode(generated, skip_special_tokens=True)


if __name__ == "__main__":
    path, prompt = Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "Once upon a time"
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    print(prompt + generate(path, prompt, count))
