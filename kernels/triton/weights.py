"""`prepare`: a weight's stored buffers as the Triton kernels read them, on the device.

The storage kinds are the CPU kernels' (`edgec.kernels.cpu.conversion.storage_parts`, numbered in
`edgec.core.storage_kinds`, layout in kernels/cpu/weight.h): codes stay as stored, as bytes, except
dense f16, bf16, fp8, int8, int4, int3, int2 and nf4 codes whose K (and group) allow it, which are
repacked once into the word layout of `edgec.kernels.triton.word_layout` (128-bit loads for both
matmul kernels), and 2:4 int8, int4, int3 and int2 codes, with their positions, into its 2:4 word
layout (int3 as int4 codes); scales and minima are float32; nf4 codes decode through a small table
of their exact float32 values, and fp8 codes in the byte layout through one too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.core.formats import Format
from edgec.core.formats.fp8 import e4m3fn_to_float32
from edgec.core.formats.nf4 import NF4_CODEBOOK
from edgec.core.storage_kinds import STORAGE_KINDS
from edgec.kernels.cpu.conversion import storage_parts
from edgec.kernels.triton.word_layout import (
    chunk_words,
    codes_per_word,
    group_words,
    interleave,
    sparse_chunk_words,
    sparse_code_bits,
    sparse_interleave,
    sparse_vectors,
)

# storage kind -> (KIND, BITS, ASYM) of the kernels (see dequant.py): KIND is the kind's decoder
KINDS = {k.name: (k.decoder, k.bits, k.asym) for k in STORAGE_KINDS.values()}
WORD_LAYOUT_KINDS = {(0, 16), (1, 16), (2, 8), (3, 8), (4, 4), (4, 3), (4, 2), (5, 4)}
"""(KIND, BITS) of the dense kinds in the word layout (gemv_ints.py, gemv_words.py, gemm_words.py): f16, bf16, fp8,
int8, int4, int3, int2, nf4."""
SPARSE_WORD_KINDS = {(3, 8), (4, 4), (4, 3), (4, 2)}
"""(KIND, BITS) of the 2:4 kinds in the 2:4 word layout (`word_layout.sparse_interleave`; gemv_sparse.py,
gemm_sparse.py): int8, int4, int3 (as int4 codes) and int2, symmetric or asymmetric."""
GROUPED_KINDS = (4, 5)
"""KINDs with a scale per group of a row (B-bit integers, nf4); the others have one per row, or none."""


@dataclass(frozen=True, eq=False)
class TritonWeight:
    """A weight (N, K) on a device: its stored codes as bytes and what decodes them."""

    fmt: Format
    shape: tuple[int, int]
    kind: int
    bits: int       # of the codes as the kernels read them (2:4 int3 in the 2:4 word layout: 4)
    asym: bool
    group: int      # values per scale group along a row of the values matrix
    kv: int         # columns of the values matrix: K, or K/2 for 2:4
    q: object       # uint8 (N, q_stride)
    scale: object   # float32 (N, ng), or a 1-element placeholder
    minv: object    # float32 (N, ng), or a placeholder
    lut: object     # float32 table of code values (fp8: 256, nf4: 16), TABLE_ALIGNMENT-aligned
    meta: object    # uint8 (N, ceil(K/8)) 2:4 positions (the 2:4 word layout's meta words when `words`), or None
    words: int = 0  # words per chunk of the (2:4) word layout (word_layout.py), 0: codes as stored
    exponent: object = None  # float32 [2^23] for the word-layout kernels (word_values.exact_int), else None

    @property
    def ng(self) -> int:
        return int(self.scale.shape[1]) if self.scale.dim() == 2 else 1

    @property
    def device(self):
        return self.q.device

    @property
    def q_words(self):
        """The word-layout codes as int32 (N, K·bits/32), a view of `q`."""
        import torch

        return self.q.view(torch.int32)

    @property
    def meta_words(self):
        """The 2:4 word layout's meta words as the kernels read them: uint8, int16 or int32 (8, 4 or 2-bit codes),
        a view of `meta`."""
        import torch

        return self.meta.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[sparse_vectors(self.bits)])

    @property
    def group_steps(self) -> int:
        """Chunks of the word layout per scale group (1 where the scale is per row or there is none, a chunk holds
        several groups, or the codes are not in the word layout)."""
        if not self.words or self.kind not in GROUPED_KINDS:
            return 1
        return max(1, self.group // (codes_per_word(self.bits) * self.words))

    @property
    def group_words(self) -> int:
        """Words of a word-layout chunk that share a scale group (`word_layout.group_words`): all of them unless a
        chunk holds several groups."""
        grouped = self.words and self.meta is None and self.kind in GROUPED_KINDS
        return group_words(self.group, self.bits, self.words) if grouped else self.words

    @property
    def prepared_bytes(self) -> int:
        """Device bytes this weight holds."""
        return sum(t.numel() * t.element_size() for t in (self.q, self.scale, self.minv, self.lut, self.meta,
                                                          self.exponent) if t is not None)


def default_device():
    import os

    import torch

    return torch.device("cpu" if os.environ.get("TRITON_INTERPRET") == "1" or not torch.cuda.is_available() else "cuda")


TABLE_ALIGNMENT = 256
"""Bytes at whose multiple a code-value table starts: the nf4 decode GEMV forms a value's address by putting its
byte offset (below 64) in the low byte of the table's (`word_values.table_values`)."""


def aligned_table(values: np.ndarray, device):
    """float32 `values` on `device`, starting at a multiple of TABLE_ALIGNMENT bytes."""
    import torch

    buffer = torch.empty(len(values) + TABLE_ALIGNMENT // 4, dtype=torch.float32, device=device)
    start = (-buffer.data_ptr() % TABLE_ALIGNMENT) // 4
    table = buffer[start:start + len(values)]
    table.copy_(torch.from_numpy(values))
    return table


def value_table(weight: TritonWeight):
    """`weight.lut` as the decode GEMVs take it. They address nf4's by its low byte (`word_values.table_values`), so
    ValueError where that table does not start at a multiple of TABLE_ALIGNMENT bytes (`prepare` places it so)."""
    if weight.kind == 5 and weight.lut.data_ptr() % TABLE_ALIGNMENT:
        raise ValueError(f"nf4's value table must start at a multiple of {TABLE_ALIGNMENT} bytes "
                         "(weights.prepare places it so)")
    return weight.lut


def prepare(fmt: Format, packed: dict[str, np.ndarray], shape: tuple[int, int], device=None) -> TritonWeight:
    """Move a weight's stored buffers to `device` (FormatError names a buffer that does not match `fmt`)."""
    import torch

    device = torch.device(device) if device is not None else default_device()
    parts = storage_parts(fmt, packed, shape)
    kind, bits, asym = KINDS[parts.kind]
    a = parts.arrays
    q = np.ascontiguousarray(a["q"]).view(np.uint8).reshape(shape[0], -1)
    kv = shape[1] // 2 if "meta" in a else shape[1]
    words = None
    meta = np.array(a["meta"]) if "meta" in a else None
    if (kind, bits) in WORD_LAYOUT_KINDS and meta is None:
        group = int(parts.group) if kind in GROUPED_KINDS else None
        words = chunk_words(shape[1], group, bits)
        span = group_words(group, bits, words) if words else None
        if words and kind != 4 and span < words:
            words = None  # groups within a chunk: only the integer GEMV (`gemv_ints`) reads them
        if words:
            q = interleave(q, shape[1], bits, words, span).view(np.uint8)
    elif meta is not None and (kind, bits) in SPARSE_WORD_KINDS:
        words = sparse_chunk_words(shape[1], int(parts.group) if kind in GROUPED_KINDS else None, sparse_code_bits(bits))
        if words:
            q, meta = (t.view(np.uint8) for t in sparse_interleave(q, meta, shape[1], words, bits, not asym))
            bits = sparse_code_bits(bits)  # the kernels' BITS
    placeholder = torch.zeros(1, dtype=torch.float32, device=device)

    def floats(name):
        return torch.from_numpy(np.array(a[name], dtype=np.float32)).to(device) if name in a else placeholder

    lut = {2: e4m3fn_to_float32(np.arange(256, dtype=np.uint8)), 5: NF4_CODEBOOK}.get(kind)
    return TritonWeight(
        fmt, (int(shape[0]), int(shape[1])), kind, bits, asym, int(parts.group), kv,
        torch.from_numpy(q.copy()).to(device), floats("scale"), floats("minv"),
        placeholder if lut is None else aligned_table(np.asarray(lut, dtype=np.float32), device),
        torch.from_numpy(np.ascontiguousarray(meta)).to(device) if meta is not None else None, words or 0,
        torch.tensor([2.0 ** 23], dtype=torch.float32, device=device) if words else None)
