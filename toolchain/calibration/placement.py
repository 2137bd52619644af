"""Where the toolchain computes: the compute device, and blocks onloaded to it one at a time.

A model's weights stay where loading put them: in host memory, in the checkpoint's own
16-bit type when it has one (a 1B model then takes 2.5 GB instead of 5 GB in float32).
Calibration, the passes' statistics and the planner's sensitivity work on one block at
a time: `onloaded(block, device)` moves the block's floating tensors to the compute
device in float32 for the duration of the work and puts each back where it was and in
the type it had, as llm-compressor and AutoGPTQ onload blocks to a GPU. Weights written
while a block is onloaded (a compressed layer) are rounded to the host type when it goes
back; the passes keep their exact results separately, in the packed buffers. A forward that
only reads a block (the planner's loss windows through the blocks after the one measured)
takes `streamed(block, device)`, which onloads one submodule at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from edgec.core.errors import EdgecError

COMPUTE = torch.float32


def compute_device(spec: str) -> torch.device:
    """The torch device for `--compute-device`: auto (a GPU when torch sees one, else the CPU), cpu, cuda or cuda:N."""
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise EdgecError(f"--compute-device {spec}: torch sees no CUDA GPU on this machine (use cpu or auto)")
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EdgecError(f"--compute-device {spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
        return device
    raise EdgecError(f"--compute-device {spec!r}: expected auto, cpu, cuda or cuda:N")


def _floating_tensors(module: nn.Module, recurse: bool = True) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for tensor in [*module.parameters(recurse=recurse), *module.buffers(recurse=recurse)]:
        if tensor.is_floating_point() and id(tensor) not in seen:
            seen.add(id(tensor))
            yield tensor


def _onload(tensors: Iterable[torch.Tensor], device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Point each tensor not already on `device` in float32 at a float32 copy there; (tensor, its host data) pairs."""
    moved = [(t, t.data) for t in tensors if t.device != device or t.dtype != COMPUTE]
    for tensor, home in moved:
        tensor.data = home.to(device=device, dtype=COMPUTE)
    return moved


@contextmanager
def onloaded(module: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """`module` with its floating parameters and buffers on `device` in float32, restored afterwards.

    Tensors change in place (`.data`), so a parameter tied to another module stays tied. A module
    already on `device` in float32 (a float32 model on the CPU) is left untouched: no copies.
    The values are written back into the host tensors' own storage rather than into new
    tensors: a checkpoint memory-mapped by loading then holds one private copy of each page
    it rewrote, not that and a second copy beside the still-mapped file.
    """
    moved = _onload(_floating_tensors(module), device)
    try:
        yield module
    finally:
        for tensor, home in moved:
            home.copy_(tensor.data)
            tensor.data = home


@contextmanager
def streamed(module: nn.Module, device: torch.device, leave: tuple[nn.Module, ...] = ()) -> Iterator[nn.Module]:
    """`module` for read-only forwards: each submodule's own floating tensors are onloaded (float32 on `device`) only
    while that submodule runs, and pointed back at their host tensors when it returns.

    A block's float32 copy then costs its largest layer rather than the whole block (a 1B
    model's gate projection, 67 MB, against its block's 243 MB). Nothing is written back: the
    host tensors are never changed. Tensors already on `device` in float32 are left alone, and
    so are the modules in `leave` (an input embedding, whose float32 copy would take 1 GB for
    a 128k vocabulary to look up a few rows).
    """
    held: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def onload(sub: nn.Module, _args: Any) -> None:
        held[id(sub)] = _onload(_floating_tensors(sub, recurse=False), device)

    def restore(sub: nn.Module, *_: Any) -> None:
        for tensor, home in held.pop(id(sub), []):
            tensor.data = home

    handles = []
    for sub in module.modules():
        if not any(sub is kept for kept in leave):
            handles += [sub.register_forward_pre_hook(onload), sub.register_forward_hook(restore)]
    try:
        yield module
    finally:
        for handle in handles:
            handle.remove()
        for sub in module.modules():  # a forward that raised left its submodules onloaded
            restore(sub)


def to_device(value: Any, device: torch.device) -> Any:
    """`value` with every tensor inside (nested in tuples, lists and dicts) on `device`; floating ones in float32."""
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=COMPUTE) if value.is_floating_point() else value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


def host_dtype(config: Any) -> torch.dtype:
    """The type a model's weights are held in on the host: the checkpoint's own when it is 16-bit, else float32."""
    declared = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(declared, str):
        declared = getattr(torch, declared, None)
    return declared if declared in (torch.float16, torch.bfloat16) else torch.float32
