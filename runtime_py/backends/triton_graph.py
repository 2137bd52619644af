"""One decode step of the triton backend captured as a CUDA graph, and replayed for every token.

A token's pass launches a few hundred small kernels (per layer: norms, seven projections,
rotary, attention, SwiGLU, adds); on its own, each launch's host work (Python, the autotuner's
lookup, the driver) costs more than a small model's kernel. Captured once, the whole pass is
one graph launch. What a replay needs is in fixed device buffers: the token's embedding row,
its position (which the rotary and attention kernels read from memory), and the KV cache,
whose rows the step writes at that position (`index_copy_`) and whose keys attention reads up
to it. The first token runs the step eagerly, on a side stream: it compiles and autotunes
every kernel (the autotuner cannot benchmark inside a capture) and is that token's result;
the capture then records the same step without running it. Later tokens copy their
embedding and position in and replay. `EDGEC_CUDA_GRAPHS=0` turns it off (each token then
runs the same step eagerly).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class CapturedDecode:
    """`step(x, position) -> logits` (x (1, hidden) float32, position int64 (1,), logits (1, vocab), all on a CUDA
    device), captured after its first run and replayed after; call it with a token's embedding and position."""

    def __init__(self, step: Callable, hidden: int, device) -> None:
        import torch

        self.step = step
        self.x = torch.zeros((1, hidden), dtype=torch.float32, device=device)
        self.position = torch.zeros((1,), dtype=torch.int64, device=device)
        self.graph = None
        self.logits = None

    def __call__(self, x: np.ndarray, start: int) -> np.ndarray:
        """The logits (1, vocab) of the token whose embedding is `x` (1, hidden), at position `start`."""
        import torch

        self.x.copy_(torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(self.x.shape)))
        self.position.fill_(start)
        if self.graph is None:
            return self._run_and_capture()
        self.graph.replay()
        return self.logits.cpu().numpy()

    def _run_and_capture(self) -> np.ndarray:
        import torch

        side = torch.cuda.Stream(self.x.device)
        side.wait_stream(torch.cuda.current_stream(self.x.device))
        with torch.cuda.stream(side):
            first = self.step(self.x, self.position).cpu().numpy()
        torch.cuda.current_stream(self.x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self.step(self.x, self.position)
        self.graph = graph
        return first
