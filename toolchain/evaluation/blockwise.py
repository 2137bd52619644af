"""`edgec eval` of a causal LM and its RTN copy, one block at a time, without a second copy of the model.

The evaluation windows go through the model block by block (`edgec.calibration.sequential`):
each block is onloaded to the compute device in float32, runs the original model's hidden
states, then has its assigned linears replaced by their round-to-nearest weights and runs the
compressed model's hidden states, and gets its original weights back. Both models' hidden
states for every window live on the device (windows x seq_len x hidden x 4 bytes each: 134 MB
for 16,384 tokens of a 2048-wide model); the head runs batch by batch at the end. The host
holds the model once, in the type it was loaded in, where comparing two whole models held two.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch

from edgec.calibration.placement import onloaded
from edgec.calibration.sequential import capture_block_inputs, final_logits, run_block
from edgec.core.formats import Format
from edgec.core.progress import progress_counter
from edgec.evaluation.causal_lm import LMComparison, Scores, TokenWindows
from edgec.models.adapters import LinearRef
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig


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
    quantized_head = [head] if head is not None and head.name in assignment else []
    head_weights = rtn_weights(quantized_head, assignment, device)
    compare = bool(assignment)
    hidden_o, kwargs = capture_block_inputs(model, blocks, kinds, windows.ids, batch_size, device)
    if quantized_head:  # a head in the assignment takes the embedding tied to it along
        with swapped(quantized_head, head_weights):
            hidden_c, _ = capture_block_inputs(model, blocks, kinds, windows.ids, batch_size, device)
    else:
        hidden_c = list(hidden_o)
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
    scores = Scores(windows)
    for start, h_o, h_c in zip(range(0, windows.ids.shape[0], batch_size), hidden_o, hidden_c):
        ids = windows.ids[start : start + batch_size]
        logits_o = final_logits(adapter, model, h_o, device)
        logits_c = None
        if compare:
            with swapped(quantized_head, head_weights):
                logits_c = final_logits(adapter, model, h_c, device)
        scores.add(ids, logits_o, logits_c)
    return scores.result()
