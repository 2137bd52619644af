"""Latency of one linear on a device (HAT-style cost model).

A linear y (T, N) = x (T, K) @ W^T with W stored in a format costs, on a device:

* the roofline (default): max(bytes moved / bandwidth, flops / peak) + dispatch, where
  bytes moved = the weight's exact stored bytes + 16-bit activations in and out, and
  flops = 2 T N K (divided by the 2:4 speed-up on hardware that has one);
* where the profile holds measured kernel timings, a predictor fitted to them
  (`edgec.planner.predictor`) instead, for the formats it was measured on.

Decode is T = 1 (one token against the weights); prefill is T = prompt length.
"""

from __future__ import annotations

from typing import Protocol

from edgec.core.formats import Format
from edgec.planner.profiles import DeviceProfile

ACTIVATION_BYTES = 2  # activations move in 16 bit


class LatencyModel(Protocol):
    """Seconds for one call of a linear of shape (n, k) stored in `fmt`, on `tokens` tokens."""

    def seconds(self, fmt: Format, n: int, k: int, tokens: int) -> float: ...


def linear_flops(n: int, k: int, tokens: int) -> int:
    """Multiply-adds counted twice: 2 T N K."""
    return 2 * tokens * n * k


def moved_bytes(fmt: Format, n: int, k: int, tokens: int) -> int:
    """Weight bytes exactly as stored, plus 16-bit activations read and written."""
    return fmt.nbytes((n, k)) + ACTIVATION_BYTES * tokens * (n + k)


class Roofline:
    """The bare roofline over a profile's data-sheet figures."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile

    def seconds(self, fmt: Format, n: int, k: int, tokens: int) -> float:
        path = self.profile.path(fmt)
        flops = linear_flops(n, k, tokens)
        if fmt.is_sparse and self.profile.sparse24_speedup > 1:
            flops /= self.profile.sparse24_speedup
        memory = moved_bytes(fmt, n, k, tokens) / (self.profile.bandwidth_gbs * 1e9)
        math = flops / (self.profile.peak_tops[path.compute] * 1e12)
        return max(memory, math) + self.profile.dispatch_us * 1e-6


def latency_model(profile: DeviceProfile) -> LatencyModel:
    """The predictor fitted to the profile's measured timings if it has them, else the roofline."""
    if profile.measured is None:
        return Roofline(profile)
    from edgec.planner.predictor import fit_predictor

    return fit_predictor(profile).model
