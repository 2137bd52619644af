"""`prepare`: a weight's stored buffers as the Triton kernels read them, on the device.

The storage kinds are the CPU kernels' (`edgec.kernels.cpu.conversion.storage_parts`, numbered in
`edgec.core.storage_kinds`, layout in kernels/cpu/weight.h): codes stay as stored, as bytes; scales and minima are float32; fp8 and
nf4 codes decode through a small table of their exact float32 values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.formats import Format
from edgec.core.formats.fp8 import e4m3fn_to_float32
from edgec.core.formats.nf4 import NF4_CODEBOOK
from edgec.core.storage_kinds import STORAGE_KINDS
from edgec.kernels.cpu.conversion import storage_parts

# storage kind -> (KIND, BITS, ASYM) of the kernels (see dequant.py): KIND is the kind's decoder
KINDS = {k.name: (k.decoder, k.bits, k.asym) for k in STORAGE_KINDS.values()}


@dataclass(frozen=True, eq=False)
class TritonWeight:
    """A weight (N, K) on a device: its stored codes as bytes and what decodes them."""

    fmt: Format
    shape: tuple[int, int]
    kind: int
    bits: int
    asym: bool
    group: int      # values per scale group along a row of the values matrix
    kv: int         # columns of the values matrix: K, or K/2 for 2:4
    q: object       # uint8 (N, q_stride)
    scale: object   # float32 (N, ng), or a 1-element placeholder
    minv: object    # float32 (N, ng), or a placeholder
    lut: object     # float32 table of code values (fp8: 256, nf4: 16), or a placeholder
    meta: object    # uint8 (N, ceil(K/8)) 2:4 positions, or None

    @property
    def ng(self) -> int:
        return int(self.scale.shape[1]) if self.scale.dim() == 2 else 1

    @property
    def device(self):
        return self.q.device


def default_device():
    import os

    import torch

    return torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda")


def prepare(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], device=None) -> TritonWeight:
    """Move a weight's stored buffers to `device` (FormatError names a buffer that does not match `fmt`)."""
    import torch

    device = torch.device(device) if device is not None else default_device()
    parts = storage_parts(fmt, packed, shape)
    kind, bits, asym = KINDS[parts.kind]
    a = parts.arrays
    q = np.ascontiguousarray(a["q"]).view(np.uint8).reshape(shape[0], -1)
    kv = shape[1] // 2 if "meta" in a else shape[1]
    placeholder = torch.zeros(1, dtype=torch.float32, device=device)

    def floats(name):
        return torch.from_numpy(np.array(a[name], dtype=np.float32)).to(device) if name in a else placeholder

    lut = {2: e4m3fn_to_float32(np.arange(256, dtype=np.uint8)), 5: NF4_CODEBOOK}.get(kind)
    return TritonWeight(
        fmt, (int(shape[0]), int(shape[1])), kind, bits, asym, int(parts.group), kv,
        torch.from_numpy(q.copy()).to(device), floats("scale"), floats("minv"),
        placeholder if lut is None else torch.from_numpy(np.asarray(lut, dtype=np.float32)).to(device),
        torch.from_numpy(np.array(a["meta"])).to(device) if "meta" in a else None)
