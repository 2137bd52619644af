"""`edgec eval` of a causal LM and its RTN copy, one block at a time, without a second copy of the model.

The evaluation windows go through the model block by block (`edgec.calibration.sequential`):
each block is onloaded to the compute device in float32, runs the original model's hidden
states, then has its assigned linears replaced by their round-to-nearest weights and runs the
compressed model's hidden states, and gets its original weights back. Both models' hidden
states for every window live on the device (windows x seq_len x hidden x 4 bytes each: 134 MB
for 16,384 tokens of a 2048-wide model). The head runs last, a band of vocabulary rows at a
time over up to `POSITIONS_PER_PASS` positions (`edgec.calibration.vocab_bands`), its rows
rounded band by band for the compressed model when it is quantized: no whole float32 head and
no whole (positions x vocabulary) logits. The host holds the model once, in the type it was
loaded in, where comparing two whole models held two.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from edgec.calibration.placement import onloaded
from edgec.calibration.sequential import capture_block_inputs, run_block
from edgec.calibration.vocab_bands import BandedSoftmax, head_is_tied, logit_bands, rounded_embedding
from edgec.core.formats import Format
from edgec.core.progress import announce_expected, progress_counter
from edgec.evaluation.causal_lm import LMComparison, TokenWindows, comparison
from edgec.models.adapters import LinearRef
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig
from edgec.planner.duration import ModelWork, compress_groups, eval_seconds, machine_speed

POSITIONS_PER_PASS = 8192  # positions whose logits one pass over the head's bands computes


def rtn_weights(refs: list[LinearRef], assignment: Mapping[str, Format], device: torch.device) -> list[torch.Tensor]:
    """Each ref's round-to-nearest weight in its assigned format, float32 on `device`, in the module's layout."""
    rtn = PASSES["rtn"]()
    out = []
    for ref in refs:
        weight = torch.from_numpy(rtn.compress(ref.weight().float().numpy(), LayerConfig(assignment[ref.name], "rtn"),
                                               None, ref.name).weight)
        out.append((weight.t() if ref.transposed else weight).to(device))
    return out


@contextmanager
def swapped(refs: list[LinearRef], weights: list[torch.Tensor]) -> Iterator[None]:
    """`refs` compute with `weights` inside the block (their tensors swapped in, nothing copied or rounded)."""
    homes = [ref.module.weight.data for ref in refs]
    for ref, weight in zip(refs, weights):
        ref.module.weight.data = weight
    try:
        yield
    finally:
        for ref, home in zip(refs, homes):
            ref.module.weight.data = home


@torch.inference_mode()
def compare_rtn_by_block(loaded: LoadedModel, assignment: Mapping[str, Format], windows: TokenWindows,
                         batch_size: int = 4, progress: bool = True,
                         device: torch.device | None = None) -> LMComparison:
    """Perplexity of `loaded` and, when `assignment` is not empty, KL and top-1 agreement of its RTN copy
    in `assignment`'s formats, on `windows`; see the module docstring."""
    device = device or torch.device("cpu")
    model, adapter = loaded.model, loaded.adapter
    blocks, kinds = adapter.blocks(model), adapter.block_kinds(model)
    by_block: dict[int, list[LinearRef]] = {}
    for ref in adapter.linears(model):
        if ref.name in assignment:
            by_block.setdefault(ref.block, []).append(ref)
    head = adapter.head(model)
    head_format = assignment.get(head.name) if head is not None else None
    compare = bool(assignment)
    hidden_o, kwargs = capture_block_inputs(model, blocks, kinds, windows.ids, batch_size, device)
    if head_format is not None and head_is_tied(model, head.module):  # the embedding is rounded with its head
        with rounded_embedding(model, head_format, windows.ids):
            hidden_c, _ = capture_block_inputs(model, blocks, kinds, windows.ids, batch_size, device)
    else:
        hidden_c = list(hidden_o)
    if progress:
        rounded = [g for groups in compress_groups(loaded, {n: (f, "rtn") for n, f in assignment.items()}).values()
                   for g in groups]
        work = ModelWork.of(loaded)
        speed = machine_speed(device, work.hidden, rows=batch_size * windows.ids.shape[1])
        announce_expected("evaluating", eval_seconds(work, rounded, *windows.ids.shape, compare, speed))
    bar = progress_counter(total=len(blocks), desc="evaluating", unit="block", enabled=progress)
    for index, block in enumerate(blocks):
        block_kwargs = [by_kind[kinds[index]] for by_kind in kwargs]
        with onloaded(block, device):
            hidden_o = [run_block(block, h, kw) for h, kw in zip(hidden_o, block_kwargs)]
            if compare:
                refs = by_block.get(index, [])
                with swapped(refs, rtn_weights(refs, assignment, device)):
                    hidden_c = [run_block(block, h, kw) for h, kw in zip(hidden_c, block_kwargs)]
        bar.update()
    bar.close()
    return _score(loaded, windows, hidden_o, hidden_c if compare else None, head_format, device)


def _predicting(hidden: list[torch.Tensor]) -> torch.Tensor:
    """Every window's hidden states at the positions that predict a next token, as (positions, H)."""
    return torch.cat([h[:, :-1].reshape(-1, h.shape[-1]) for h in hidden])


def _score(loaded: LoadedModel, windows: TokenWindows, hidden_o: list[torch.Tensor],
           hidden_c: list[torch.Tensor] | None, head_format: Format | None, device: torch.device) -> LMComparison:
    """Perplexity (and against the compressed model's hidden states: perplexity, KL, top-1) from the last block's
    outputs, `POSITIONS_PER_PASS` positions at a time over the head's vocabulary bands."""
    model, adapter = loaded.model, loaded.adapter
    h_o = _predicting(hidden_o)
    h_c = _predicting(hidden_c) if hidden_c is not None else None
    targets = windows.ids[:, 1:].reshape(-1)
    nll_o = nll_c = kl = agree = 0.0
    for start in range(0, len(targets), POSITIONS_PER_PASS):
        part = slice(start, start + POSITIONS_PER_PASS)
        soft = BandedSoftmax(len(targets[part]), device, targets[part])
        bands_o = logit_bands(adapter, model, h_o[part], device)
        if h_c is None:
            for first, z_o in bands_o:
                soft.add(first, z_o)
        else:
            for (first, z_o), (_, z_c) in zip(bands_o, logit_bands(adapter, model, h_c[part], device, head_format)):
                soft.add(first, z_o, z_c)
            nll_c += float(soft.nll(compressed=True).sum())
            kl += float(soft.kl().sum())
            agree += float(soft.agreement().sum())
        nll_o += float(soft.nll().sum())
    return comparison(windows, nll_o) if h_c is None else comparison(windows, nll_o, nll_c, kl, agree)
