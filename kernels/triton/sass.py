"""What a compiled matmul kernel's main loop issues per stored weight byte, read from its SASS (no GPU needed).

A decode GEMV streams every weight byte once, so it runs at the GPU's memory bandwidth only
if its main loop issues few enough instructions per byte: otherwise it is bound by
instruction issue, however the memory system performs. A GPU issues one warp instruction
per scheduler per clock, 32 lane-instructions:

| GPU (architecture) | lane-instructions / s | memory bandwidth | budget, lane-instructions per byte |
|---|---:|---:|---:|
| H200 (sm_90) | 132 SMs x 4 x 32 x 1.98 GHz = 33.4 T | 4.8 TB/s | 7 |
| RTX 4090 (sm_89) | 128 SMs x 4 x 32 x 2.52 GHz = 41.3 T | 1.01 TB/s | 41 |

(SM counts, boost clocks and bandwidths from NVIDIA's H200 and RTX 4090 product pages.)

Issue is not the only per-byte limit: every byte a lane loads from global memory (L1 hits
included) or moves through shared memory crosses the SM's L1/shared-memory datapath, 128 bytes
per clock on both GPUs, which is the same 7 and 41 bytes per byte of memory bandwidth. A kernel
that passes decoded values through shared memory (a tensor-core tile of float16 values is 8 bytes
of stores and loads per stored int4 byte) or re-reads its inputs for every row is bound there.
The bytes counted are lane bytes: exact for coalesced loads and for loads whose lanes fall on one
cache line, an overcount where lanes share addresses, an undercount for loads spread over several
lines (a pass each). A kind decoded by table lookup (nf4) needs 8 of them per stored byte, so it
is held to the decode target instead of an H200's full bandwidth (`LOOKUP_BUDGET`).

`loop_profile` compiles a variant (`edgec.kernels.triton.resources`), disassembles the cubin
with `cuobjdump -sass`, takes the main loop (the body of the widest backward branch), and
counts its instructions, its global loads by width, and the bytes its loads and shared-memory
accesses move. `LoopProfile.per_weight_byte` divides the
lane-instructions of one iteration (instructions x warps x 32) by the stored bytes that
iteration reads: the codes of a BLOCK_N x BLOCK_K tile, and its group scales (and minima) at
`TYPICAL_GROUP` values per group. Where ptxas unrolls the loop, one iteration holds several
steps and the figure overstates by that factor (an earlier bf16 word-layout loop came out
unrolled 4x, 5.5 for what is now 1.3): a kernel within budget is within it. Wide loads matter as much: one
128-bit load per lane brings 16 bytes for one instruction, a byte load brings 1.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgec.kernels.triton.resources import TYPICAL_GROUP, Variant, compile_cubin, cuobjdump
from edgec.kernels.triton.word_layout import codes_per_word, stored_words

ISSUE_BUDGET = {90: 7.0, 89: 41.0}
"""Lane-instructions per stored byte at which the loop issues as fast as memory delivers (table above)."""

TRAFFIC_BUDGET = {90: 7.0, 89: 41.0}
"""Bytes through L1 and shared memory per stored byte at which that datapath keeps up with memory: 128 bytes per
clock and SM, 132 x 128 x 1.98 GHz = 33.4 TB/s on an H200, 128 x 128 x 2.52 GHz = 41.3 TB/s on an RTX 4090."""

LOOKUP_BUDGET = {90: 11.1, 89: 41.0}
"""Both budgets (instructions and L1 bytes per stored byte) for kinds decoded by table lookup, nf4. Each code's value
is a load, and a warp's load of 32 codes' float32 values, 16 stored bytes, crosses the L1 datapath in one 128-byte
wavefront at best: 8 bytes per stored byte, more than an H200's 7, however few instructions surround it. No lookup
decode reaches an H200's full bandwidth, so there nf4 is held to the runtime's decode target instead, 70 % of the
measured copy bandwidth (0.7 x 4.27 TB/s = 3.0 TB/s): 33.4 T lane-instructions/s, and 33.4 TB/s of datapath, over
3.0 TB/s. An RTX 4090's budgets already leave room for lookups."""


def decode_budgets(kind: str, arch: int) -> tuple[float, float]:
    """(lane-instructions, L1 bytes) per stored byte a decode GEMV of storage kind `kind` (a label such as `int4`,
    `nf4:g64` or `2:4+nf4`) may spend on `arch`: LOOKUP_BUDGET's for nf4, else ISSUE_BUDGET's and TRAFFIC_BUDGET's."""
    if kind.removeprefix("2:4+").split(":")[0] == "nf4":
        return LOOKUP_BUDGET[arch], LOOKUP_BUDGET[arch]
    return ISSUE_BUDGET[arch], TRAFFIC_BUDGET[arch]


TENSOR_MACS = {90: 14.8, 89: 2.0}
"""Multiply-adds per lane-instruction at which a prefill GEMM's loop issues as fast as the tensor cores multiply
float16 with float32 accumulation: an H200's 989.5 TFLOP/s (494.7 T multiply-adds/s) over its 33.4 T lane-
instructions/s, an RTX 4090's 165.2 TFLOP/s over 41.3 T (NVIDIA's H200 product page and Ada whitepaper)."""

PREFILL_MIN_MACS = {arch: rate / 2 for arch, rate in TENSOR_MACS.items()}
"""The prefill budget: a GEMM loop issuing fewer multiply-adds per lane-instruction than half the tensor cores'
rate cannot reach half their peak, nor half of cuBLAS's speed, whatever its memory traffic."""

_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_TARGET = re.compile(r"0x([0-9a-f]+)")


@dataclass(frozen=True)
class Instruction:
    """One SASS instruction: its address, opcode with modifiers (e.g. `LDG.E.128`) and operands."""

    address: int
    opcode: str
    operands: str


def parse_sass(text: str) -> list[Instruction]:
    """The instructions of `cuobjdump -sass` output, in address order."""
    return [Instruction(int(m.group(1), 16), m.group(2), m.group(3).strip()) for m in _INSTRUCTION.finditer(text)]


def main_loop(instructions: list[Instruction]) -> list[Instruction]:
    """The body of the widest backward branch (the outer loop over K); empty when there is no loop."""
    loops = []
    for ins in instructions:
        target = _TARGET.search(ins.operands) if ins.opcode.startswith("BRA") else None
        if target and int(target.group(1), 16) < ins.address:
            loops.append((int(target.group(1), 16), ins.address))
    if not loops:
        return []
    start, end = max(loops, key=lambda span: span[1] - span[0])
    return [ins for ins in instructions if start <= ins.address <= end]


def shared_bits(opcode: str) -> int | None:
    """Bits one lane moves through shared memory with `opcode` (LDS, STS, and LDSM/STSM of 1, 2 or 4 8x8 matrices
    of 16-bit values); None otherwise."""
    parts = opcode.split(".")
    if parts[0] in ("LDSM", "STSM"):
        return 32 * (4 if "4" in parts[1:] else 2 if "2" in parts[1:] else 1)
    if parts[0] not in ("LDS", "STS"):
        return None
    for width, names in ((128, ("128",)), (64, ("64",)), (16, ("U16", "S16")), (8, ("U8", "S8"))):
        if any(name in parts for name in names):
            return width
    return 32


def global_load_bits(opcode: str) -> int | None:
    """Bits one lane loads from global memory with `opcode` (LDG, or LDGSTS into shared memory); None otherwise."""
    if not (opcode.startswith("LDG.") or opcode.startswith("LDGSTS.")):
        return None
    parts = opcode.split(".")
    for width, names in ((128, ("128",)), (64, ("64",)), (16, ("U16", "S16")), (8, ("U8", "S8"))):
        if any(name in parts for name in names):
            return width
    return 32


@dataclass(frozen=True)
class LoopProfile:
    """A main loop's instructions per iteration (per warp) and its global loads: width in bits -> count."""

    instructions: int
    loads: dict[int, int]
    warps: int
    stored_bytes: float  # weight bytes one iteration reads (codes, scales, minima)
    macs: float = 0.0    # multiply-adds one iteration does (GEMM: BLOCK_M x BLOCK_N x the K it covers)
    moved: int = 0       # bytes one iteration's lanes load (global) or move through shared memory, per warp

    @property
    def per_weight_byte(self) -> float:
        """Lane-instructions issued per stored weight byte."""
        return self.instructions * self.warps * 32 / self.stored_bytes

    @property
    def traffic_per_weight_byte(self) -> float:
        """Bytes through L1 and shared memory per stored weight byte."""
        return self.moved * self.warps / self.stored_bytes

    @property
    def macs_per_instruction(self) -> float:
        """Multiply-adds per lane-instruction issued."""
        return self.macs / (self.instructions * self.warps * 32) if self.instructions else 0.0

    @property
    def wide_load_share(self) -> float:
        """The share of the loop's global-load bytes that come in 128-bit loads."""
        total = sum(bits * count for bits, count in self.loads.items())
        return self.loads.get(128, 0) * 128 / total if total else 0.0


SPARSE_KERNELS = ("_gemv_sparse_kernel", "_gemv_sparse_floats_kernel", "_gemm_sparse")
"""The kernels of 2:4 weights in the 2:4 word layout (integers) or as stored (fp16, bf16, fp8, nf4 values)."""


def tile_bytes(variant: Variant) -> float:
    """Stored bytes of the weight tile a matmul variant reads per iteration: BLOCK_N x BLOCK_K values, or in the
    (2:4) word layout BLOCK_N x WORDS 32-bit words of codes (and their meta words)."""
    c = variant.constexprs
    if variant.fn.__name__ in SPARSE_KERNELS:
        bits = c["BITS"]
        if variant.fn.__name__ == "_gemv_sparse_floats_kernel" or c.get("WORDS") == 0:
            # values as stored: per row WORDS (GEMV) or STEPS steps of four groups (GEMM) of words of 16 / bits groups,
            # a position nibble per group; nf4's scales
            groups = 16 // bits
            words = c["BLOCK_N"] * (4 // groups * c["STEPS"] if "BLOCK_M" in c else c["WORDS"])
            scales = words * 32 / bits / TYPICAL_GROUP * 4 if c["KIND"] == 5 else 0
            return words * (4 + groups / 2) + scales
        # the 2:4 word layout: per row WORDS (GEMV) or 4 (GEMM) code words, a meta word of 8 / bits bytes each,
        # grouped scales below 8 bits
        words = c["BLOCK_N"] * (4 if "BLOCK_M" in c else c["WORDS"])
        scales = words * 32 / bits / TYPICAL_GROUP * 4 * (2 if c["ASYM"] else 1) if bits < 8 else 0
        return words * (4 + 8 / bits) + scales
    if "BLOCK_K" not in c:  # the word layout
        words = c["WORDS"]
        rows, cols = c["BLOCK_N"], codes_per_word(c["BITS"]) * words
        grouped = c["BITS"] <= 4  # int4, int3, int2 and nf4; int8 has one scale per row, 16-bit kinds none
        if c.get("KIND") == 5 and "GROUP_STEPS" in c and "BLOCK_M" not in c:  # nf4's GEMV: a group spans whole steps
            group = cols * c["GROUP_STEPS"]
        elif c.get("GROUP_WORDS", words) == words:
            group = TYPICAL_GROUP
        else:
            group = c["GROUP_WORDS"] * codes_per_word(c["BITS"])
        scales = rows * cols / group * 4 * (2 if c.get("ASYM") else 1) if grouped else 0
        return rows * stored_words(c["BITS"], words) * 4 + scales
    rows, cols, bits = c["BLOCK_N"], c["BLOCK_K"], c["BITS"]
    values = cols // 2 if c["SPARSE"] else cols
    codes = rows * values * bits / 8 + (rows * cols / 8 if c["SPARSE"] else 0)  # 2:4: one position bit a column
    grouped = bits <= 4  # 8- and 16-bit weights carry one scale per row or none
    scales = rows * values / TYPICAL_GROUP * 4 * (2 if c["ASYM"] else 1) if grouped else 0
    return codes + scales


def tile_macs(variant: Variant) -> float:
    """Multiply-adds of one iteration of a GEMM variant's loop (0 for a GEMV): BLOCK_M x BLOCK_N x BLOCK_K, for the
    word-layout GEMM one chunk of WORDS words of 32 / BITS values, for the 2:4 GEMM the columns of one step."""
    c = variant.constexprs
    if "BLOCK_M" not in c:
        return 0.0
    if variant.fn.__name__ in SPARSE_KERNELS:  # 16 columns a step per slot of the 2:4 word layout, or per step as stored
        k = 16 * (c["STEPS"] if c["WORDS"] == 0 else 16 // c["BITS"])
    else:
        k = c["BLOCK_K"] if "BLOCK_K" in c else codes_per_word(c["BITS"]) * c["WORDS"]
    return float(c["BLOCK_M"] * c["BLOCK_N"] * k)


def loop_profile(variant: Variant, arch: int) -> LoopProfile:
    """Compile a matmul variant for `arch` and profile its main loop (see the module docstring)."""
    cubin, _ = compile_cubin(variant, arch)
    body = main_loop(parse_sass(cuobjdump(cubin, "-sass")))
    loads: dict[int, int] = {}
    moved = 0
    for ins in body:
        bits = global_load_bits(ins.opcode)
        if bits is not None:
            loads[bits] = loads.get(bits, 0) + 1
        moved += (bits or shared_bits(ins.opcode) or 0) * 32 // 8
    return LoopProfile(len(body), loads, variant.options.get("num_warps", 4), tile_bytes(variant), tile_macs(variant),
                       moved)
