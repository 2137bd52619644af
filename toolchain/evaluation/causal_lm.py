"""Perplexity, KL divergence and top-1 agreement of a causal LM against its original.

The text is tokenized once and cut into non-overlapping windows of `seq_len`
tokens; within each window every position but the first is predicted, so a
window contributes seq_len - 1 predictions. Both models see the same windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from edgec.core.errors import EdgecError
from edgec.core.progress import progress_counter


@dataclass(frozen=True)
class TokenWindows:
    """Evaluation windows (n, seq_len) cut from a tokenized text."""

    ids: torch.Tensor
    tokens_in_text: int

    @property
    def predictions(self) -> int:
        return self.ids.shape[0] * (self.ids.shape[1] - 1)


@dataclass(frozen=True)
class LMComparison:
    """What `edgec eval` reports for a causal LM; compressed fields are None without a compressed model."""

    tokens_in_text: int
    predictions: int
    windows: int
    seq_len: int
    perplexity_original: float
    perplexity_compressed: float | None = None
    kl_mean: float | None = None  # nats per predicted token, KL(original || compressed)
    top1_agreement: float | None = None


def token_windows(tokenizer: PreTrainedTokenizerBase, text: str, seq_len: int, max_tokens: int | None) -> TokenWindows:
    """Tokenize `text` and cut it into windows; `max_tokens` caps the tokens used (None = all)."""
    if seq_len < 2:
        raise EdgecError(f"--seq-len must be at least 2, got {seq_len}")
    ids = tokenizer(text, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    usable = len(ids) if max_tokens is None else min(len(ids), max_tokens)
    n = usable // seq_len
    if n == 0:
        raise EdgecError(f"the text has {len(ids)} tokens, fewer than one window of --seq-len {seq_len}")
    return TokenWindows(torch.tensor(ids[: n * seq_len]).reshape(n, seq_len), len(ids))


class Scores:
    """Sums of negative log-likelihood, KL and top-1 agreement over batches of whole logits of the same windows.

    The log-softmax runs in float64: a good compressed model's KL is near 1e-4 nats, which float32
    log-probabilities (each off by ~1e-6) miss by a relative ~5e-4.
    """

    def __init__(self, windows: TokenWindows) -> None:
        self.windows = windows
        self.nll_o = self.nll_c = self.kl = self.agree = 0.0
        self.compared = False

    def add(self, ids: torch.Tensor, logits_o: torch.Tensor, logits_c: torch.Tensor | None) -> None:
        """Score one batch: `ids` (B, T), logits (B, T, V) of the original and (if any) the compressed model."""
        targets = ids[:, 1:, None].to(logits_o.device)
        logp_o = torch.log_softmax(logits_o[:, :-1].double(), dim=-1)  # (B, T-1, V)
        self.nll_o -= logp_o.gather(-1, targets).sum().item()
        if logits_c is None:
            return
        self.compared = True
        logp_c = torch.log_softmax(logits_c[:, :-1].double(), dim=-1)
        self.nll_c -= logp_c.gather(-1, targets).sum().item()
        self.kl += (logp_o.exp() * (logp_o - logp_c)).sum().item()
        self.agree += (logp_o.argmax(-1) == logp_c.argmax(-1)).sum().item()

    def result(self) -> LMComparison:
        return comparison(self.windows, self.nll_o, *((self.nll_c, self.kl, self.agree) if self.compared else ()))


def comparison(windows: TokenWindows, nll_o: float, nll_c: float | None = None, kl: float | None = None,
               agree: float | None = None) -> LMComparison:
    """The report from sums over every prediction of the windows (compressed figures None when not compared)."""
    n, ids = windows.predictions, windows.ids
    common = dict(tokens_in_text=windows.tokens_in_text, predictions=n, windows=ids.shape[0], seq_len=ids.shape[1],
                  perplexity_original=math.exp(nll_o / n))
    if nll_c is None:
        return LMComparison(**common)
    return LMComparison(**common, perplexity_compressed=math.exp(nll_c / n), kl_mean=kl / n, top1_agreement=agree / n)


@torch.inference_mode()
def compare_causal_lm(
    original: nn.Module,
    compressed: nn.Module | None,
    windows: TokenWindows,
    batch_size: int = 4,
    progress: bool = True,
) -> LMComparison:
    """Evaluate `original` (and `compressed`, if given) on the same windows, each model whole."""
    scores = Scores(windows)
    ids = windows.ids
    for start in progress_counter(range(0, ids.shape[0], batch_size), desc="evaluating", unit="batch", enabled=progress):
        x = ids[start : start + batch_size].to(original.device)
        scores.add(x, original(x).logits, None if compressed is None else compressed(x).logits)
    return scores.result()
