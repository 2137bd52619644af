"""A causal LM's logits a band of vocabulary rows at a time, and the figures reduced from them.

A 1B-class model's head maps to 128,256 tokens: its float32 copy takes 1 GB, and so do the
float32 logits of 2,048 positions, then again each tensor made from them (log-softmax, its
exponential, a difference). The toolchain holds neither whole. `logit_bands` runs the final norm
once, then converts one band of the head's rows to float32 on the compute device (rounding them
to a format first if asked: rows are independent in every format), applies it to every position
and yields that band's logits. `BandedSoftmax` folds each band into per-position figures
(log-sum-exp, argmax, the target's logit, and against a second stream of logits the KL
divergence), as flash attention folds the softmax over blocks of keys. An embedding tied to a
rounded head is looked up through `rounded_embedding`, which rounds only the rows the tokens use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from edgec.calibration.sequential import final_hidden
from edgec.core.formats import Format
from edgec.models.adapters import Adapter

LOGITS_PER_BAND = 1 << 22  # logits of one band: 16 MB in float32, 32 MB per float64 work array
HEAD_PER_BAND = 1 << 24  # head weights of one band: 64 MB in float32 (few positions would otherwise take many rows)


def rounded_rows(weight: torch.Tensor, fmt: Format | None, rows: slice) -> torch.Tensor:
    """Rows `rows` of a (host) weight in float32, round-to-nearest in `fmt` when given."""
    band = weight[rows].detach().float()
    return band if fmt is None else torch.from_numpy(fmt.fake_quantize(band.numpy()))


@contextmanager
def rounded_embedding(model: nn.Module, fmt: Format, ids: torch.Tensor) -> Iterator[None]:
    """Inside, the input embedding looks up `ids` in rows round-to-nearest in `fmt` (a head tied to the embedding,
    quantized): only the rows `ids` use are rounded, into a compact table the ids are remapped to, so no whole
    float32 copy of a 128k-row embedding is made. Outside the block, the embedding is as it was."""
    embedding = model.get_input_embeddings()
    weight = embedding.weight
    used = torch.unique(ids)
    table = torch.from_numpy(fmt.fake_quantize(weight.detach()[used].float().numpy()))
    home = weight.data
    handle = embedding.register_forward_pre_hook(lambda module, args: (torch.searchsorted(used, args[0]), *args[1:]))
    weight.data = table
    try:
        yield
    finally:
        weight.data = home
        handle.remove()


def head_is_tied(model: nn.Module, head: nn.Linear) -> bool:
    """Whether the head's weight is the input embedding's (changing one changes the other)."""
    embedding = model.get_input_embeddings()
    return embedding is not None and embedding.weight is head.weight


def logit_bands(adapter: Adapter, model: nn.Module, hidden: torch.Tensor, device: torch.device,
                fmt: Format | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """(first token id, float32 logits (n, band)) over the vocabulary for `hidden` (n, H), the last block's
    output; with `fmt` the head's rows are round-to-nearest in that format. Soft cap applied where the family
    has one. Every band but the last has the same width for a given n, so two calls on equally many positions
    yield matching bands."""
    head = adapter.head(model).module
    cap = adapter.logit_softcap(model)
    hidden = final_hidden(adapter, model, hidden, device).float()
    vocab = head.weight.shape[0]
    step = max(1, min(LOGITS_PER_BAND // max(hidden.shape[0], 1), HEAD_PER_BAND // hidden.shape[1]))
    for start in range(0, vocab, step):
        rows = slice(start, start + step)
        logits = hidden @ rounded_rows(head.weight, fmt, rows).to(device).T
        if head.bias is not None:
            logits += head.bias[rows].detach().to(device=device, dtype=torch.float32)
        yield start, logits if cap is None else torch.tanh(logits / cap) * cap


class BandedSoftmax:
    """Per-position figures of one stream of logits (`o`), and optionally a second (`c`) over the same
    positions, folded band by band (`add`) without either stream ever being whole.

    All sums share one running shift (the largest logit of either stream so far) and are kept in
    float64: KL(o || c) = Σ p_o (z_o - z_c) + log(Σ e^{z_c} / Σ e^{z_o}), whose two terms nearly
    cancel for a good compressed model; with one shift the second is the log of a ratio near 1,
    not the difference of two log-sum-exps near 10.
    """

    def __init__(self, positions: int, device: torch.device, targets: torch.Tensor | None = None) -> None:
        def zeros() -> torch.Tensor:
            return torch.zeros(positions, dtype=torch.float64, device=device)

        self.targets = None if targets is None else targets.to(device)
        self.shift = torch.full((positions,), -torch.inf, dtype=torch.float64, device=device)
        self.sum_o, self.sum_c, self.cross = zeros(), zeros(), zeros()
        self.target_o, self.target_c = zeros(), zeros()
        self.best_o, self.best_c = self.shift.clone(), self.shift.clone()
        self.argmax_o = torch.zeros(positions, dtype=torch.long, device=device)
        self.argmax_c = self.argmax_o.clone()
        # float64 work arrays reused from band to band: fresh ones of tens of MB cost more in page
        # faults than the arithmetic done in them
        self._work: dict[str, torch.Tensor] = {}

    def _array(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The reused float64 work array `name`, shaped like `like`."""
        work = self._work.get(name)
        if work is None or work.shape[1] < like.shape[1]:
            work = self._work[name] = torch.empty(like.shape, dtype=torch.float64, device=like.device)
        return work[:, : like.shape[1]]

    def add(self, start: int, z_o: torch.Tensor, z_c: torch.Tensor | None = None) -> None:
        """Fold the band of token ids start.. (logits (n, band) of each stream)."""
        o = self._array("o", z_o).copy_(z_o)
        self._best(start, o, self.best_o, self.argmax_o)
        self._target(start, o, self.target_o)
        top = o.amax(-1)
        if z_c is not None:
            c = self._array("c", z_c).copy_(z_c)
            self._best(start, c, self.best_c, self.argmax_c)
            self._target(start, c, self.target_c)
            top = torch.maximum(top, c.amax(-1))
            difference = torch.sub(o, c, out=self._array("d", o))
        shift = torch.maximum(self.shift, top)
        rescale = torch.exp(self.shift - shift)
        self.shift = shift
        e_o = o.sub_(shift[:, None]).exp_()
        self.sum_o = self.sum_o * rescale + e_o.sum(-1)
        if z_c is None:
            return
        self.sum_c = self.sum_c * rescale + c.sub_(shift[:, None]).exp_().sum(-1)
        self.cross = self.cross * rescale + difference.mul_(e_o).sum(-1)

    @staticmethod
    def _best(start: int, z: torch.Tensor, best: torch.Tensor, argmax: torch.Tensor) -> None:
        value, index = z.max(-1)
        better = value > best  # strictly: on a tie the earlier token wins, as argmax over the whole row does
        best[better] = value[better]
        argmax[better] = index[better] + start

    def _target(self, start: int, z: torch.Tensor, into: torch.Tensor) -> None:
        if self.targets is None:
            return
        inside = (self.targets >= start) & (self.targets < start + z.shape[1])
        into[inside] = z[inside, self.targets[inside] - start]

    def nll(self, compressed: bool = False) -> torch.Tensor:
        """Negative log-likelihood of the targets per position (needs `targets`)."""
        total, target = (self.sum_c, self.target_c) if compressed else (self.sum_o, self.target_o)
        return self.shift + torch.log(total) - target

    def kl(self) -> torch.Tensor:
        """KL(o || c) per position, in nats."""
        return self.cross / self.sum_o + torch.log(self.sum_c / self.sum_o)

    def agreement(self) -> torch.Tensor:
        """Whether the two streams' most likely tokens agree, per position."""
        return self.argmax_o == self.argmax_c
