"""The model-output loss of a model changed in one place against the original, on fixed token windows.

The planner's sensitivity measures it for each (unit, candidate): for a causal LM the mean
per-token KL(original || changed) in nats, for an encoder the mean per-token cosine distance
of the last hidden states.
"""

from __future__ import annotations

import torch

from edgec.calibration.placement import onloaded, streamed
from edgec.calibration.sequential import capture_block_inputs, final_hidden, run_block
from edgec.calibration.vocab_bands import BandedSoftmax, logit_bands, rounded_embedding
from edgec.core.formats import Format
from edgec.models.loading import LoadedModel


class OutputLoss:
    """The model-output loss of a changed model against the original on fixed windows.

    For a causal LM the original's logits are kept in vocabulary bands (`edgec.calibration.vocab_bands`)
    and a changed model's are folded against them band by band: KL(original || changed) without any
    whole log-softmax.
    """

    def __init__(self, loaded: LoadedModel, ids: torch.Tensor, device: torch.device) -> None:
        self.model, self.adapter, self.device = loaded.model, loaded.adapter, device
        self.causal = loaded.task == "causal-lm"
        self.blocks = self.adapter.blocks(self.model)
        self.ids = ids
        self.kinds = self.adapter.block_kinds(self.model)
        inputs, kwargs = capture_block_inputs(self.model, self.blocks, self.kinds, ids, ids.shape[0], device)
        self.hidden, self.kwargs = inputs[0], kwargs[0]  # the loss windows at the current block's input; kind -> arguments
        last = self._from_block(0, self.hidden)
        if self.causal:
            self.reference = [logits for _, logits in logit_bands(self.adapter, self.model, positions(last), device)]
        else:  # (B, T, H); float64: 1 - cos is tiny
            self.reference = torch.nn.functional.normalize(self._final(last).double(), dim=-1)

    def _final(self, hidden: torch.Tensor) -> torch.Tensor:
        return final_hidden(self.adapter, self.model, hidden, self.device)

    def _from_block(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        for i in range(index, len(self.blocks)):  # read-only: one submodule in float32 at a time
            with streamed(self.blocks[i], self.device):
                hidden = run_block(self.blocks[i], hidden, self.kwargs[self.kinds[i]])
        return hidden

    def _loss(self, last: torch.Tensor, head_format: Format | None = None) -> float:
        """The loss of a model whose last block output `last` (its head's rows rounded to `head_format`)."""
        if not self.causal:
            out = torch.nn.functional.normalize(self._final(last).double(), dim=-1)
            return float((1 - (out * self.reference).sum(-1)).mean())
        rows = positions(last)
        folded = BandedSoftmax(rows.shape[0], self.device)
        bands = logit_bands(self.adapter, self.model, rows, self.device, head_format)
        for (start, logits), reference in zip(bands, self.reference):
            folded.add(start, reference, logits)
        return float(folded.kl().mean())

    def changed_block(self, index: int) -> float:
        """Loss with the model as it is now, given that blocks before `index` are unchanged."""
        return self._loss(self._from_block(index, self.hidden))

    def changed_head(self, fmt: Format, tied: bool) -> float:
        """Loss with the head's rows rounded to `fmt` (and the embedding's, when `tied`), once every block has been
        advanced past: the blocks' outputs are then the unchanged model's, and only a tied embedding needs a full
        forward."""
        if not tied:
            return self._loss(self.hidden, fmt)
        with rounded_embedding(self.model, fmt, self.ids):
            inputs, _ = capture_block_inputs(self.model, self.blocks, self.kinds, self.ids, self.ids.shape[0],
                                             self.device)
        return self._loss(self._from_block(0, inputs[0]), fmt)

    def advance(self, index: int) -> None:
        """Move the cached hidden states past block `index` (unchanged)."""
        with onloaded(self.blocks[index], self.device):
            self.hidden = run_block(self.blocks[index], self.hidden, self.kwargs[self.kinds[index]])


def positions(hidden: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) as (positions, H)."""
    return hidden.reshape(-1, hidden.shape[-1])
