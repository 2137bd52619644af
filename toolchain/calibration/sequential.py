"""The sequential calibration pipeline (as in GPTQ and llm-compressor).

Calibration tokens go through the model one block at a time. For block i:

1. its inputs are the outputs of blocks 0..i-1 *already compressed*;
2. hooks on the block's linears accumulate `InputStats` over all samples;
3. `compress_block` compresses the block's linears in place from those statistics;
4. the compressed block is run again to produce the inputs of block i+1.

The model stays in host memory in the type it was loaded in; each block is onloaded to
the compute device in float32 for steps 2-4 (`placement.onloaded`), and the activations
between blocks live on the compute device. Statistics are accumulated there and handed
to the passes on the CPU, where their math runs. Peak memory is the model, one float32
block, one block's statistics and the calibration activations (samples x seq_len x
hidden), never a second copy of the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edgec.calibration.placement import onloaded, streamed, to_device
from edgec.calibration.stats import InputStats
from edgec.core.memory import release_free_memory
from edgec.core.progress import progress_counter
from edgec.models.adapters import Adapter, LinearRef, ScaleGroup


@dataclass
class BlockCalibration:
    """What a pass sees of one block: its index, module, linears and their input statistics."""

    index: int
    block: nn.Module
    linears: list[LinearRef]
    stats: dict[str, InputStats]  # linear name -> stats; linears sharing an input share the object
    inputs: list[torch.Tensor]  # the block's input hidden states, one tensor per batch
    kwargs: list[dict]  # the other arguments the model passed to the block, per batch
    scale_groups: list[ScaleGroup]  # linears sharing an input, and where an input scale folds


class _StopForward(Exception):
    pass


def capture_block_inputs(model: nn.Module, blocks: list[nn.Module], kinds: list[str], ids: torch.Tensor,
                         batch_size: int, device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, dict]]]:
    """The first block's input hidden states, and the other arguments the model passes to the blocks of each
    kind (`Adapter.block_kinds`), per batch, on `device` in float32: the model runs where its embedding is, up
    to the first block of the last kind it reaches, every module streamed in float32 (`placement.streamed`),
    and the embedding's output is made float32 before anything reads it, so that rotary tables and masks
    computed from it are float32 for a 16-bit model too."""
    inputs: list[torch.Tensor] = []
    captured: list[dict[str, dict]] = []
    firsts = {kind: kinds.index(kind) for kind in kinds}  # kind -> its first block
    last = max(firsts.values())

    def hook(index, kind, module, args, kwargs):
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs.pop("hidden_states")
        if index == 0:
            inputs.append(to_device(hidden.detach(), device))
            captured.append({})
        kept = {k: v for k, v in kwargs.items() if k not in ("past_key_value", "past_key_values", "use_cache")}
        captured[-1][kind] = to_device({**kept, "__positional__": args[1:]}, device)
        if index == last:
            raise _StopForward

    embedding = model.get_input_embeddings()
    handles = [blocks[index].register_forward_pre_hook(functools.partial(hook, index, kind), with_kwargs=True)
               for kind, index in firsts.items()]
    handles.append(embedding.register_forward_hook(lambda module, args, out: out.float()))
    ids = ids.to(embedding.weight.device)
    try:
        with streamed(model, embedding.weight.device, leave=(embedding,)):  # the rest of the way in float32
            for start in range(0, ids.shape[0], batch_size):
                try:
                    model(input_ids=ids[start : start + batch_size], use_cache=False)
                except _StopForward:
                    pass
    finally:
        for handle in handles:
            handle.remove()
    return inputs, captured


def run_block(block: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """One block's output hidden states, given its input and the arguments `capture_block_inputs` captured."""
    positional = kwargs.get("__positional__", ())
    out = block(hidden, *positional, **{k: v for k, v in kwargs.items() if k != "__positional__"})
    return out[0] if isinstance(out, tuple) else out


def final_hidden(adapter: Adapter, model: nn.Module, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The last block's output through the model's final norm (if it has one), on `device`."""
    norm = adapter.final_norm(model)
    if norm is None:
        return hidden
    with onloaded(norm, device):
        return norm(hidden)


def _shared_input_groups(adapter: Adapter, model: nn.Module, linears: list[LinearRef]) -> dict[str, str]:
    """Linear name -> name of the linear whose input statistics it shares (fused groups read one input)."""
    leader = {ref.name: ref.name for ref in linears}
    for group in adapter.fused_groups(model):
        for name in group:
            if name in leader:
                leader[name] = group[0]
    return leader


def _collect_stats(block: nn.Module, leaders: list[LinearRef], stats: dict[str, InputStats],
                   inputs: list[torch.Tensor], kwargs: list[dict]) -> None:
    """Run the block over every batch, accumulating its linears' input statistics.

    The first batch runs whole and counts the hook calls; later batches stop right after
    the last of them, as nothing after the last linear's input is needed (in a LLaMA block
    this skips down_proj's product, a quarter of the block's matmul work).
    """
    calls = [0]
    needed: list[int | None] = [None]

    def hook(module, args, s):
        s.add(args[0])
        calls[0] += 1
        if calls[0] == needed[0]:
            raise _StopForward

    handles = [ref.module.register_forward_pre_hook(lambda m, args, s=stats[ref.name]: hook(m, args, s))
               for ref in leaders]
    try:
        for hidden, kw in zip(inputs, kwargs):
            calls[0] = 0
            try:
                run_block(block, hidden, kw)
            except _StopForward:
                pass
            needed[0] = needed[0] or calls[0]
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_sequential(
    model: nn.Module,
    adapter: Adapter,
    ids: torch.Tensor,
    compress_block: Callable[[BlockCalibration], None],
    batch_size: int = 2,
    hessian: bool = True,
    progress: bool = True,
    device: torch.device | None = None,
) -> None:
    """Calibrate and compress `model` block by block on token windows `ids` (n, seq_len), computing on
    `device` (None: the CPU); see the module docstring."""
    device = device or torch.device("cpu")
    blocks = adapter.blocks(model)
    all_linears = adapter.linears(model)
    kinds = adapter.block_kinds(model)
    inputs, kwargs_by_kind = capture_block_inputs(model, blocks, kinds, ids, batch_size, device)
    bar = progress_counter(total=len(blocks), desc="compressing", unit="block", enabled=progress)
    for index, block in enumerate(blocks):
        kwargs = [by_kind[kinds[index]] for by_kind in kwargs_by_kind]
        linears = [ref for ref in all_linears if ref.block == index]
        leader = _shared_input_groups(adapter, model, linears)
        with onloaded(block, device):
            stats = {name: InputStats(ref.shape[1], hessian, device) for ref in linears
                     if (name := ref.name) == leader[name]}
            _collect_stats(block, [ref for ref in linears if leader[ref.name] == ref.name], stats, inputs, kwargs)
            for s in stats.values():
                s.to_host()
            stats.update({name: stats[lead] for name, lead in leader.items()})
            compress_block(BlockCalibration(index, block, linears, stats, inputs, kwargs,
                                            adapter.scale_groups(model, index)))
            del stats
            if index + 1 < len(blocks):  # the last block's outputs feed nothing
                inputs = [run_block(block, hidden, kw) for hidden, kw in zip(inputs, kwargs)]
        release_free_memory()
        bar.update()
    bar.close()
