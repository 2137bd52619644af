"""The `reference` backend: each weight dequantized to float32 once, multiplied by numpy. Plainly right, not fast."""

from __future__ import annotations

import numpy as np

from edgec.core.formats import Format
from edgec.runtime.backends.base import Backend, Kernel


class ReferenceBackend(Backend):
    """Dequantize at load (a float32 copy of every weight), then `x @ W.T`."""

    name = "reference"

    def kernel(self, fmt: Format, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> tuple[Kernel, int]:
        w_t = np.ascontiguousarray(fmt.dequantize(buffers, shape).T)  # (K, N)
        return (lambda x: x @ w_t), w_t.nbytes
