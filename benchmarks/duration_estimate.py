"""The duration estimate's GPTQ sweep term against measured sweeps, and the per-column constants they imply.

    python benchmarks/duration_estimate.py

Times `obs_sweep` as `edgec compress --method gptq` runs it (int4:g128, act_order, clip search) on
random weights and a random positive-definite Hessian, for the shared-input groups of SmolLM2
and of Llama 3.2 1B, and prints each beside `edgec.planner.duration.sweep_seconds`. It then
fits the sweep's constants (`FACTOR_K3`, `SWEEP_NK2`, `SWEEP_ELEMENT_S`) by least squares, which
is how the shipped values were chosen. Run it on an idle machine.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from edgec.core.formats import parse_format
from edgec.passes.obs_math import obs_sweep
from edgec.planner import duration

SHAPES = {  # (rows of the stacked group, input width)
    "SmolLM2 q/k/v": (960, 576), "SmolLM2 gate/up": (3072, 576), "SmolLM2 down": (576, 1536),
    "1B q/k/v": (3072, 2048), "1B o": (2048, 2048), "1B down": (2048, 8192),
}


def _sweep(n: int, k: int) -> float:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
    x = rng.standard_normal((2 * k, k), dtype=np.float32)
    h = x.T @ x
    start = time.perf_counter()
    obs_sweep(w, h, quantizer=parse_format("int4:g128"), act_order=True, clip=True)
    return time.perf_counter() - start


def main() -> None:
    speed = duration.machine_speed(torch.device("cpu"))
    print(f"numpy {speed.numpy_flops / 1e9:.1f} GFLOP/s, torch {speed.torch_flops / 1e9:.1f} GFLOP/s")
    rows = []
    for label, (n, k) in SHAPES.items():
        measured = _sweep(n, k)
        rows.append((n, k, measured))
        print(f"{label:18s} ({n:5d} x {k:5d}): measured {measured:7.2f} s, estimated "
              f"{duration.sweep_seconds(n, k, speed):7.2f} s", flush=True)
    design = np.array([[k**3 / speed.numpy_flops, n * k * k / speed.numpy_flops, n * k] for n, k, _ in rows])
    (factor, sweep, element), *_ = np.linalg.lstsq(design, np.array([m for *_, m in rows]), rcond=None)
    print(f"fitted: FACTOR_K3 = {factor:.3g}, SWEEP_NK2 = {sweep:.3g}, SWEEP_ELEMENT_S = {element:.3g} "
          f"(shipped {duration.FACTOR_K3:.3g}, {duration.SWEEP_NK2:.3g}, {duration.SWEEP_ELEMENT_S:.3g})")

if __name__ == "__main__":
    main()
