"""Calibration windows cut from the shipped calibration text (Sense and Sensibility)."""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from edgec.core.errors import EdgecError
from edgec.data import calibration_text


def calibration_windows(tokenizer: PreTrainedTokenizerBase, samples: int, seq_len: int,
                        text: str | None = None) -> tuple[torch.Tensor, int]:
    """`samples` windows of `seq_len` tokens spread evenly over the text, and the text's token count.

    Deterministic: the same tokenizer and settings always give the same windows.
    """
    ids = tokenizer(text if text is not None else calibration_text(), add_special_tokens=False,
                    return_attention_mask=False)["input_ids"]
    if len(ids) < samples * seq_len:
        raise EdgecError(f"the calibration text has {len(ids):,} tokens, fewer than {samples} samples x {seq_len}")
    stride = (len(ids) - seq_len) // max(samples - 1, 1)
    starts = [i * stride for i in range(samples)]
    return torch.tensor([ids[s : s + seq_len] for s in starts]), len(ids)
