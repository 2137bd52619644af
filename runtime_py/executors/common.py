"""Pieces every executor shares: reading weights through a backend, norms, activations, attention."""

from __future__ import annotations

import numpy as np

from edgec.core.architectures import NORM_PARAMETERS, NORM_WEIGHT_OFFSET, Architecture
from edgec.core.errors import ContainerError
from edgec.runtime.backends.base import Backend, Linear, embedding_rows
from edgec.runtime.container import EdgecFile

Shape = tuple[int | None, ...]  # None: any size in that dimension


class Weights:
    """A model file's tensors, as the executors ask for them: linears through the backend, small vectors as float32.

    Each request names the shape the model's config implies, and a stored tensor of another shape
    is refused; `check_all_used` then refuses a file holding tensors the executor never asked for
    (a config that says fewer layers than the file has, say), so a file whose config and tensors
    disagree is refused at load instead of computing garbage.
    """

    def __init__(self, file: EdgecFile, backend: Backend) -> None:
        self.file, self.backend = file, backend
        self.nbytes = 0  # bytes the prepared linears keep in memory (beyond the mapped file)
        self.used: set[str] = set()  # stored tensor names asked for

    def _entry(self, name: str, shape: Shape):
        try:
            entry = self.file.resolve(name)
        except KeyError:
            raise ContainerError(f"{self.file.path}: tensor {name!r} is missing") from None
        if len(entry.shape) != len(shape) or any(want is not None and got != want for got, want in zip(entry.shape, shape)):
            expected = "(" + ", ".join("any" if n is None else str(n) for n in shape) + ")"
            raise ContainerError(f"{self.file.path}: tensor {name!r} has shape {entry.shape}; model.config makes it {expected}")
        self.used.add(entry.name)
        return entry

    def linear(self, name: str, shape: tuple[int, int], bias: str | None = None) -> Linear:
        """The linear layer whose weight `name` is `shape` (N, K) (with a bias vector (N,), if named and stored)."""
        entry = self._entry(name, shape)
        b = self.vector(bias, (shape[0],)) if bias is not None and bias in self.file.tensors else None
        layer = self.backend.linear(entry.format, self.file.buffers(name), entry.shape, b)
        self.nbytes += layer.nbytes
        return layer

    def vector(self, name: str, shape: Shape) -> np.ndarray:
        """A small tensor (norm weight, bias, position table) of `shape` as float32."""
        self._entry(name, shape)
        return self.file.dequantize(name)

    def embedding(self, name: str, shape: tuple[int, int]) -> Embedding:
        """Row lookups in the stored (vocab, dim) matrix `name`, dequantizing only the rows asked for."""
        entry = self._entry(name, shape)
        return Embedding(entry.format, self.file.buffers(name), entry.shape)

    def allow(self, name: str, shape: Shape) -> None:
        """Accept a stored tensor the model carries but this runtime does not compute with (checking its shape)."""
        if name in self.file.tensors:
            self._entry(name, shape)

    def check_all_used(self, model: str) -> None:
        """Refuse stored tensors that no request named: the config describes another model than the tensors."""
        unused = [name for name in self.file.tensors if name not in self.used]
        if unused:
            more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
            raise ContainerError(f"{self.file.path}: tensor {unused[0]!r}{more} is no part of {model} that "
                                 f"model.config describes")


class FamilyWeights:
    """A model's tensors asked for by role, named by its family's description (`edgec.core.architectures`).

    `i` picks block i's tensor of that role (None: a tensor outside the blocks); `root` prefixes every
    name (a base model's tensors stored under a task model's prefix).
    """

    def __init__(self, weights: Weights, arch: Architecture, root: str = "") -> None:
        self.weights, self.arch, self.root = weights, arch, root

    def name(self, role: str, i: int | None = None, part: str = "weight") -> str:
        """The stored name of the `part` ("weight", "bias") of `role`."""
        module = self.arch.tensors[role] if i is None else self.arch.block_tensor(i, role)
        return f"{self.root}{module}.{part}"

    def stored(self, role: str, i: int | None = None) -> bool:
        """Whether the file holds the weight of `role` (for tensors only some variants have)."""
        return self.name(role, i) in self.weights.file.tensors

    def linear(self, role: str, shape: tuple[int, int], i: int | None = None, bias: bool = True) -> Linear:
        """The linear of `role` (N, K), with its bias if `bias` and stored."""
        return self.weights.linear(self.name(role, i), shape, self.name(role, i, "bias") if bias else None)

    def vector(self, role: str, shape: Shape, i: int | None = None, part: str = "weight") -> np.ndarray:
        """The `part` of `role` as float32."""
        return self.weights.vector(self.name(role, i, part), shape)

    def norm(self, role: str, size: int, i: int | None = None) -> tuple[np.ndarray, ...]:
        """The parameters of the norm `role` as the family's norm kind computes with them: the weight it scales
        by (Gemma's stored weight plus 1), and the bias for LayerNorm."""
        weight, *bias = (self.vector(role, (size,), i, part) for part in NORM_PARAMETERS[self.arch.norm])
        offset = NORM_WEIGHT_OFFSET[self.arch.norm]
        return (weight + np.float32(offset) if offset else weight, *bias)

    def embedding(self, role: str, shape: tuple[int, int]) -> Embedding:
        """The embedding table of `role`, kept in its stored format."""
        return self.weights.embedding(self.name(role), shape)


class Embedding:
    """An embedding table kept in its stored format."""

    def __init__(self, fmt, buffers: dict[str, np.ndarray], shape: tuple[int, int]) -> None:
        self.fmt, self.buffers, self.shape = fmt, buffers, shape

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return embedding_rows(self.fmt, self.buffers, self.shape, np.asarray(ids, dtype=np.int64))


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / rms(x) * weight over the last axis, in float32."""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps)) * weight


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / std * weight + bias over the last axis, in float32."""
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + np.float32(eps)) * weight + bias


SILU_FLUSH = np.float32(-60)  # below it |silu(x)| < 6e-25: set to 0 (see silu)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), with values below -60 flushed to zero.

    Very negative gates give |silu| near 1e-33, whose products with weights in the next
    matmul are subnormal floats; BLAS then runs up to 100x slower on many CPUs. Their true
    contribution is below 1e-24 of the output, so they are dropped.
    """
    with np.errstate(over="ignore"):
        y = x / (1 + np.exp(-x))
    y[x < SILU_FLUSH] = 0
    return y


def erf(x: np.ndarray) -> np.ndarray:
    """The error function to within 1.5e-7 (Abramowitz and Stegun 7.1.26), vectorised in numpy."""
    a = np.abs(x).astype(np.float64)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (np.sign(x) * (1 - poly * np.exp(-a * a))).astype(np.float32)


def gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU."""
    return x * np.float32(0.5) * (1 + erf(x * np.float32(0.7071067811865476)))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation of GELU."""
    return 0.5 * x * (1 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))


def softcap(x: np.ndarray, cap: float | None) -> np.ndarray:
    """cap * tanh(x / cap) (Gemma's logit soft-capping); x unchanged if cap is None."""
    return x if cap is None else np.float32(cap) * np.tanh(x / np.float32(cap))


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int, causal: bool = True,
              window: int | None = None, mask: np.ndarray | None = None, scalar: float | None = None) -> np.ndarray:
    """Scaled dot-product attention of T new queries over S keys, grouped-query aware.

    q: (T, H, hd) at positions start..start+T-1; k, v: (S, KVH, hd) at positions 0..S-1; H a
    multiple of KVH. `mask` (S,) bool drops keys (padding). Scores are scaled by scalar**-0.5
    (scalar defaults to hd). Returns (T, H * hd).
    """
    t, heads, hd = q.shape
    s, kv_heads, _ = k.shape
    group = heads // kv_heads
    qg = q.reshape(t, kv_heads, group, hd).transpose(1, 2, 0, 3)  # (KVH, G, T, hd)
    scores = qg @ k.transpose(1, 2, 0)[:, None] * np.float32(1 / np.sqrt(scalar or hd))  # (KVH, G, T, S)
    allowed = np.ones((t, s), bool) if mask is None else np.broadcast_to(mask[None, :], (t, s)).copy()
    if causal:
        query_pos = np.arange(start, start + t)[:, None]
        key_pos = np.arange(s)[None, :]
        allowed &= key_pos <= query_pos
        if window is not None:
            allowed &= key_pos > query_pos - window
    scores = np.where(allowed, scores, np.float32(-np.inf))
    scores -= scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    out = probs @ v.transpose(1, 0, 2)[:, None]  # (KVH, G, T, hd)
    return out.transpose(2, 0, 1, 3).reshape(t, heads * hd)
