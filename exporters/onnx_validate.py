"""Run an exported graph in ONNX Runtime and compare it with the torch model it came from.

Decoders: for each prompt, ONNX Runtime runs the prompt as one prefill step (empty past),
then greedily continues it by `decode_steps` tokens, each a decode step fed with the
previous step's present KV as past. Every position's logits are compared with the
reference's forward over the same tokens: the largest absolute difference and
KL(reference || onnx), averaged over positions. Encoders compare
`last_hidden_state` on the non-padding positions of a padded batch.

The torch reference is the model in the export source, which holds exactly the
dequantized weights and quantizes the activations of W8A8 layers (`ExportSource`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

PROMPTS = (
    "It is a truth universally acknowledged, that a single man in possession",
    "The quick brown fox jumps over",
    "Once upon a time, in a small village by the sea,",
)
PROVIDERS = ["CPUExecutionProvider"]


@dataclass
class Validation:
    """How closely ONNX Runtime reproduced the torch reference."""

    prompts: int
    positions: int
    max_abs_diff: float  # over every compared logit (decoder) or hidden value (encoder)
    mean_kl: float | None  # KL(reference || onnx) in nats per position, decoders only
    max_kl: float | None
    reference_scale: float  # largest |logit| (|hidden value|) of the reference, for scale
    providers: list[str]

    def to_json(self) -> dict:
        return dict(self.__dict__)


def session(model: bytes | str, threads: int | None = None, spin: bool = False) -> ort.InferenceSession:
    """A CPU session over a serialized model or a path.

    Unless `spin`, ONNX Runtime's worker threads sleep between runs instead of spinning, so
    that torch, running beside it during validation, keeps its cores.
    """
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=PROVIDERS)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare_logits(ref: np.ndarray, got: np.ndarray) -> tuple[float, np.ndarray]:
    """Largest |difference| and per-position KL(ref || got) of logits (..., V)."""
    lr, lg = _log_softmax(ref), _log_softmax(got)
    kl = (np.exp(lr) * (lr - lg)).sum(axis=-1)
    return float(np.abs(ref - got).max()), kl.reshape(-1)


def generate_cached(sess: ort.InferenceSession, prompt: np.ndarray, steps: int, kv: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Greedy decoding of prompt (1, T): one prefill step from an empty past, then `steps` steps of one token
    fed with the previous step's present KV. Returns the ids fed (1, T + steps) and their logits (T + steps, V)."""
    layers, kv_heads, head_dim = kv
    past = {f"past_key_values.{i}.{p}": np.zeros((1, kv_heads, 0, head_dim), np.float32)
            for i in range(layers) for p in ("key", "value")}
    ids, got, start = prompt, [], 0
    for _ in range(steps + 1):
        end = ids.shape[1]
        feed = {"input_ids": ids[:, start:], "attention_mask": np.ones((1, end), np.int64),
                "position_ids": np.arange(start, end, dtype=np.int64)[None], **past}
        logits, *present = sess.run(None, feed)
        past = dict(zip(past, present))
        got.append(logits[0])
        ids, start = np.concatenate([ids, logits[:, -1:].argmax(-1)], axis=1), end
    return ids[:, :-1], np.concatenate(got)


def validate_decoder(sess: ort.InferenceSession, model: torch.nn.Module, tokenizer, kv: tuple[int, int, int],
                     decode_steps: int = 3, prompts: tuple[str, ...] = PROMPTS) -> Validation:
    """Prefill plus `decode_steps` cached steps per prompt in ONNX Runtime, each position's logits compared
    with the torch model's forward over the same tokens (module docstring)."""
    max_abs, kls, scale = 0.0, [], 0.0
    for prompt in prompts:
        ids, got = generate_cached(sess, tokenizer(prompt, return_tensors="np")["input_ids"][:, :32].astype(np.int64),
                                   decode_steps, kv)
        with torch.no_grad():
            ref = model(input_ids=torch.from_numpy(ids)).logits[0].numpy()  # (T + steps, V)
        diff, kl = compare_logits(ref, got)
        max_abs, scale = max(max_abs, diff), max(scale, float(np.abs(ref).max()))
        kls.append(kl)
    kl_all = np.concatenate(kls)
    return Validation(len(prompts), int(kl_all.size), max_abs, float(kl_all.mean()), float(kl_all.max()), scale,
                      list(sess.get_providers()))


def validate_encoder(sess: ort.InferenceSession, model: torch.nn.Module, tokenizer,
                     prompts: tuple[str, ...] = PROMPTS) -> Validation:
    """last_hidden_state of a padded batch of the prompts, compared on non-padding positions."""
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True)
    token_types = batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=token_types).last_hidden_state.numpy()
    (got,) = sess.run(None, {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy(),
                             "token_type_ids": token_types.numpy()})
    keep = batch["attention_mask"].numpy().astype(bool)
    diff = np.abs(ref - got)[keep]
    return Validation(len(prompts), int(keep.sum()), float(diff.max()), None, None, float(np.abs(ref[keep]).max()),
                      list(sess.get_providers()))
