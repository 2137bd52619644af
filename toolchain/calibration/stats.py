"""Input statistics of linear layers, accumulated over calibration tokens.

For a linear with K input features fed tokens x (one row each):

* ``hessian``: sum of x xᵀ (K, K), float32 — GPTQ's and SparseGPT's H up to a factor
  2/n, and what makes AWQ's output-error search exact without keeping activations;
* ``sq_sum``: sum of x² per input feature (K,) — Wanda's ‖X_j‖² ;
* ``abs_sum``: sum of |x| per input feature (K,) — AWQ's activation magnitude;
* ``abs_max``: max |x| per input feature (K,) — SmoothQuant's activation range.
"""

from __future__ import annotations

import torch

BAND = 256  # rows per band of the Hessian's upper triangle


class InputStats:
    """Running statistics of one linear's inputs."""

    def __init__(self, k: int, hessian: bool = True, device: torch.device | None = None) -> None:
        self.tokens = 0
        # xᵀx is symmetric: only bands of BAND rows, from the diagonal rightwards, are
        # accumulated (in place, float32 per batch, which saves about a third of the work
        # for K = 1536); `hessian` mirrors them in place once, when first read. It stays
        # float32, the precision it was summed in: a float64 copy would add nothing but
        # half a GB at K = 8192 (the passes' factorization runs in float64 on its own copy).
        self._upper = torch.zeros(k, k, dtype=torch.float32, device=device) if hessian else None
        self._hessian: torch.Tensor | None = None
        self.sq_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.abs_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.abs_max = torch.zeros(k, dtype=torch.float32, device=device)

    def to_host(self) -> None:
        """Move the statistics to the CPU, where the passes' math reads them (accumulation may run on a GPU)."""
        for name in ("_upper", "_hessian", "sq_sum", "abs_sum", "abs_max"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.cpu())

    def add(self, x: torch.Tensor) -> None:
        """Accumulate a batch of inputs (..., K); refused once the Hessian has been read."""
        if self._hessian is not None:
            raise RuntimeError("input statistics are final once their Hessian has been read")
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (tokens, K)
        self.tokens += x.shape[0]
        if self._upper is not None:
            for i in range(0, x.shape[1], BAND):
                self._upper[i : i + BAND, i:].addmm_(x[:, i : i + BAND].t(), x[:, i:])
        self.sq_sum += x.square().sum(0).double()
        self.abs_sum += x.abs().sum(0).double()
        self.abs_max = torch.maximum(self.abs_max, x.abs().amax(0))

    @property
    def hessian(self) -> torch.Tensor | None:
        """Σ x xᵀ (K, K) in float32, or None when not collected. Reading it makes the statistics final."""
        if self._upper is not None:
            full = self._upper
            for i in range(0, len(full), BAND):  # mirror band by band, in place
                j = i + BAND
                full[j:, i:j] = full[i:j, j:].t()
                block = full[i:j, i:j]
                block.copy_(block.triu() + block.triu(1).t())
            self._hessian = full
            self._upper = None
        return self._hessian

    @property
    def abs_mean(self) -> torch.Tensor:
        """Mean |x| per input feature (K,)."""
        return (self.abs_sum / max(self.tokens, 1)).float()

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂ per input feature (K,), over all calibration tokens."""
        return self.sq_sum.sqrt().float()
