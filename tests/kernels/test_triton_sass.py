"""Reading a compiled kernel's main loop from its SASS: the parser on a fixed listing, and the whole check
(`benchmarks/triton_sass.py`, outside the interpreter, which cannot compile) on the decode GEMVs (instructions and
L1 bytes per stored byte) and the prefill GEMM."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.kernels.triton import sass
from edgec.kernels.triton.resources import matmul_variants

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "triton_sass.py"

LISTING = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;                       /* 0x00000a00ff017b82 */
        /*0010*/               @P0 BRA 0x0070 ;                                 /* 0x0000003000540947 */
        /*0020*/               @P5 LDG.E.U8 R112, desc[UR14][R20.64] ;          /* 0x0000000e14705981 */
        /*0030*/                   LDG.E.128 R4, desc[UR14][R8.64] ;            /* 0x0000000e08047981 */
        /*0040*/                   FFMA R3, R4, R5, R3 ;                        /* 0x0000000504037223 */
        /*0050*/                   LDGSTS.E.BYPASS.128 [R2], desc[UR4][R6.64] ; /* 0x0000000006027fae */
        /*0060*/              @!P1 BRA 0x20 ;                                   /* 0xffffffd800ec9947 */
        /*0070*/                   STG.E desc[UR14][R10.64], R3 ;               /* 0x0000000e0a037986 */
        /*0080*/                   BRA 0x80;                                    /* 0xfffffffc00fc7947 */
"""


def test_main_loop_is_the_widest_backward_branch():
    instructions = sass.parse_sass(LISTING)
    assert [i.opcode for i in instructions][:3] == ["LDC", "BRA", "LDG.E.U8"] and len(instructions) == 9
    body = sass.main_loop(instructions)
    assert [i.address for i in body] == [0x20, 0x30, 0x40, 0x50, 0x60]  # not the self-loop at the end
    assert [sass.global_load_bits(i.opcode) for i in body] == [8, 128, None, 128, None]


def test_loop_profile_counts_lane_instructions_per_stored_byte():
    profile = sass.LoopProfile(instructions=100, loads={8: 16, 32: 16}, warps=4, stored_bytes=1024)
    assert profile.per_weight_byte == 100 * 4 * 32 / 1024
    assert profile.wide_load_share == 0
    assert sass.LoopProfile(10, {128: 3, 32: 4}, 4, 1).wide_load_share == pytest.approx(384 / 512)


def test_shared_memory_accesses_count_the_bytes_each_lane_moves():
    assert [sass.shared_bits(op) for op in ("LDS.128", "STS.64", "LDS", "LDS.U8", "LDSM.16.M88.4", "STSM.16.M88.2",
                                            "LDSM.16.M88", "LDG.E.128", "FFMA")] == [128, 64, 32, 8, 128, 64, 32, None,
                                                                                      None]
    profile = sass.LoopProfile(instructions=10, loads={128: 2}, warps=4, stored_bytes=512, moved=2 * 512 + 256)
    assert profile.traffic_per_weight_byte == (2 * 512 + 256) * 4 / 512


def test_tile_bytes_count_codes_and_group_scales():
    int4 = next(v for v in matmul_variants(["int4"], (False,), "first") if v.label.startswith("_gemv"))
    rows, cols = int4.constexprs["BLOCK_N"], int4.constexprs["BLOCK_K"]
    assert sass.tile_bytes(int4) == rows * cols / 2 + rows * cols / sass.TYPICAL_GROUP * 4
    sparse = next(v for v in matmul_variants(["int8"], (True,), "first") if v.label.startswith("_gemv "))
    assert sass.tile_bytes(sparse) == rows * cols / 2 + rows * cols / 8  # half the values, a position bit each
    words = next(v for v in matmul_variants(["int2_asym"], (True,), "first") if v.label.startswith("_gemv_sparse "))
    row_words = words.constexprs["BLOCK_N"] * words.constexprs["WORDS"]  # 16 codes and a 32-bit meta word each
    assert sass.tile_bytes(words) == row_words * (4 + 4) + row_words * 16 / sass.TYPICAL_GROUP * 4 * 2
    floats = next(v for v in matmul_variants(["nf4"], (True,), "first") if v.label.startswith("_gemv_sparse_floats "))
    row_words = floats.constexprs["BLOCK_N"] * floats.constexprs["WORDS"]  # 4 groups' 8 values and 2 meta bytes each
    assert sass.tile_bytes(floats) == row_words * (4 + 2) + row_words * 8 / sass.TYPICAL_GROUP * 4


def _sass_check(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--dense-only", "--configs", "first"],
                          capture_output=True, text=True, env=env, timeout=600)


def _row(stdout: str, prefix: str, arch: int) -> tuple[dict[int, int], int, float, float]:
    """(global loads per iteration by width in bits, 128-bit share in %, the figure: lane-instructions per byte, or
    for the GEMM multiply-adds per lane-instruction, and the L1 and shared-memory bytes per stored byte) of the first
    row starting with `prefix` on `arch`."""
    line = next(row for row in stdout.splitlines() if row.startswith(prefix) and f"sm_{arch}" in row)
    loads, share, figure, traffic, _ = re.search(
        r"sm_\d+\s+\d+\s+(.*?)\s+(\d+)%\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)$", line).groups()
    widths = dict(tuple(int(v) for v in item.split(":")) for item in loads.split(", ") if item)
    return widths, int(share), float(figure), float(traffic)


INT_KINDS = ("int4", "int4_asym", "int3", "int3_asym", "int2", "int2_asym")
WORD_KINDS = ("nf4", "fp8", "int8", "f16", "bf16")
SMALL_GROUPS = ("int3:g32", "int3_asym:g32", "int2:g32", "int2_asym:g32")
"""3- and 2-bit codes in groups of 32: 16-word chunks of eight groups of two words each (`word_layout.group_words`),
a scale (and minimum) gathered per word."""
NF4_GROUPS = ("nf4:g64", "nf4:g32")
"""nf4 in the GPU profiles' groups of 64 (8-word chunks) and in groups of 32 (4-word chunks)."""
NF4_LOOKUPS = 128
"""The 16-value table's loads per thread and step: one per code of a thread's 16 words (`rows_for_chunk`)."""


def test_the_word_layout_decode_gemvs_issue_and_move_within_both_budgets():
    """The budget guard: for every kind in the word layout the decode GEMV's main loop (`_gemv_ints` for the
    integers, `_gemv_words` for the rest), compiled for sm_89 and sm_90, loads its codes 128 bits at a time and
    issues at most the lane-instructions per stored byte an H200 (7) and an RTX 4090 (41) deliver memory for, and
    moves no more bytes through L1 and shared memory per stored byte; nf4, decoded by table lookup, within 70 % of
    an H200's copy bandwidth (`sass.LOOKUP_BUDGET`), from its 16-value table. nf4 also loads
    one value per code, int3 reads its high plane a word at a time; besides those, only a few scalar loads (scales,
    minima, chunk factors and sums) may be narrower, and a scale (and minimum) per word where a chunk holds several
    groups (3- and 2-bit codes in groups of 32)."""
    done = _sass_check("--kinds", ",".join(INT_KINDS + WORD_KINDS))
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in INT_KINDS + SMALL_GROUPS + WORD_KINDS + NF4_GROUPS:
        kernel = "_gemv_ints" if kind.split(":")[0] in INT_KINDS else "_gemv_words"
        scalars = 8 + (16 * (2 if "asym" in kind else 1) + 8 if kind in SMALL_GROUPS else 0)  # scales gathered per word
        for arch in (89, 90):
            widths, share, per_byte, traffic = _row(done.stdout, f"{kernel} {kind} ", arch)
            instructions, l1 = sass.decode_budgets(kind, arch)
            assert per_byte <= instructions and traffic <= l1, (kind, arch, per_byte, traffic)
            narrow = sum(count for bits, count in widths.items() if bits < 128)
            lookups = NF4_LOOKUPS if kind.startswith("nf4") else 8 if kind.startswith("int3") else 0
            assert widths.get(128, 0) >= 4 and narrow <= scalars + lookups, (kind, arch, widths)
            least = 60 if kind in SMALL_GROUPS else 80 if kind.startswith("int3") else 90
            assert kind.startswith("nf4") or share >= least, (kind, arch, share)
    for kind in ("int3", "int3_asym"):  # 4-word chunks (6 stored words), 8-byte aligned: 64-bit loads
        for arch in (89, 90):
            widths, _, per_byte, traffic = _row(done.stdout, f"_gemv_ints {kind} 256x1 w4 (4-word chunks)", arch)
            assert per_byte <= sass.ISSUE_BUDGET[arch] and traffic <= sass.TRAFFIC_BUDGET[arch], (kind, arch)
            assert widths.get(64, 0) >= 8 and widths.get(32, 0) <= 16, (kind, arch, widths)


SPARSE_WORD_KINDS = INT_KINDS + ("int8",)
"""2:4 kinds in the 2:4 word layout (`_gemv_sparse`); the rest are read as stored (`_gemv_sparse_floats`)."""
SPARSE_FLOAT_KINDS = ("f16", "bf16", "fp8", "nf4")
OVER_THE_H200 = {"nf4": (sass.LOOKUP_BUDGET[90], 11.5)}
"""2:4 kinds over the H200's budgets, and the bounds (instructions, L1 bytes per stored byte) they keep there: each
kept nf4 value is a load from the 16-value table, each kept pair's inputs a 64-bit load from its group's table
(docs/triton.md)."""


def test_the_2_4_decode_gemvs_issue_and_move_within_both_budgets():
    """2:4 over int8, int4, int3 and int2 (symmetric or not) in the 2:4 word layout (`_gemv_sparse`: a PRMT and a
    DP4A per four kept codes and plane) and over fp16, bf16, fp8 and nf4 as stored (`_gemv_sparse_floats`: each
    kept pair's inputs gathered from a table of x per position pair): within both budgets on both architectures,
    nf4 on sm_90 aside, codes (and the word layout's meta words) in 128-bit loads."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--kinds", ",".join(SPARSE_WORD_KINDS + SPARSE_FLOAT_KINDS),
                           "--layout", "words", "--configs", "first"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 1 and "2:4+nf4 on sm_90" in done.stderr, done.stderr[-2000:]
    assert "2:4+nf4 on sm_89" not in done.stderr
    assert not any(f"2:4+{kind} on" in done.stderr for kind in SPARSE_WORD_KINDS + SPARSE_FLOAT_KINDS[:3])
    for kind in SPARSE_WORD_KINDS + SPARSE_FLOAT_KINDS:
        kernel = "_gemv_sparse" if kind in SPARSE_WORD_KINDS else "_gemv_sparse_floats"
        for arch in (89, 90):
            widths, _, per_byte, traffic = _row(done.stdout, f"{kernel} 2:4+{kind} ", arch)
            instructions, l1 = OVER_THE_H200[kind] if arch == 90 and kind in OVER_THE_H200 else (
                sass.decode_budgets(f"2:4+{kind}", arch))
            assert per_byte <= instructions and traffic <= l1, (kind, arch, per_byte, traffic)
            assert widths.get(128, 0) >= (32 if kind in SPARSE_WORD_KINDS else 4), (kind, arch, widths)
    for kind in SPARSE_WORD_KINDS:  # the narrower chunks of K = 576 (none for int2, whose rows would not align)
        narrow = [row for row in done.stdout.splitlines() if row.startswith(f"_gemv_sparse 2:4+{kind} 256x1 w4 (")]
        assert len(narrow) == (0 if kind.startswith("int2") else 2), (kind, narrow)
        for arch in (89, 90) if narrow else ():
            _, _, per_byte, traffic = _row("\n".join(narrow), "_gemv_sparse", arch)
            assert per_byte <= sass.ISSUE_BUDGET[arch] and traffic <= sass.TRAFFIC_BUDGET[arch], (kind, arch)


def test_the_2_4_prefill_gemm_issues_few_enough_instructions_per_multiply_add():
    """`_gemm_sparse` over every 2:4 kind (integers in the 2:4 word layout, fp16, bf16, fp8 and nf4 as stored; a
    dense tile of four groups per `tl.dot`) within the prefill budget on both architectures, where the byte-layout
    GEMM managed 0.2 to 0.5."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--kernel", "gemm", "--kinds",
                           ",".join(SPARSE_WORD_KINDS + SPARSE_FLOAT_KINDS), "--layout", "words", "--configs",
                           "first"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in SPARSE_WORD_KINDS + SPARSE_FLOAT_KINDS:
        for arch in (89, 90):
            _, _, macs, _ = _row(done.stdout, f"_gemm_sparse 2:4+{kind} ", arch)
            assert macs >= sass.PREFILL_MIN_MACS[arch], (kind, arch, macs)


def test_the_word_layout_prefill_gemm_issues_few_enough_instructions_per_multiply_add():
    """The prefill guard: for every kind in the word layout and every chunk width the GEMM reads (16, 8 and 4
    words; 16 and 8 for 16-bit kinds; 3- and 2-bit codes also in groups of 32, several a chunk), its main
    loop, compiled for sm_89 and sm_90, issues at most twice the lane-instructions per multiply-add that would keep
    the tensor cores at their peak (at least 7.4 multiply-adds per lane-instruction on an H200, 1.0 on an RTX
    4090); the byte-layout GEMM's first tile manages 0.5 (docs/triton.md)."""
    done = _sass_check("--kernel", "gemm", "--kinds", ",".join(INT_KINDS + WORD_KINDS))
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in INT_KINDS + WORD_KINDS:
        labels = {line.split(" sm_")[0] for line in done.stdout.splitlines() if line.startswith(f"_gemm_words {kind} ")}
        assert len(labels) == (2 if kind in ("f16", "bf16") else 3), labels
        labels |= {f"_gemm_words {kind}:g32"} if f"{kind}:g32" in SMALL_GROUPS else set()
        for label in labels:
            for arch in (89, 90):
                _, _, macs, _ = _row(done.stdout, label + " ", arch)
                assert macs >= sass.PREFILL_MIN_MACS[arch], (label, arch, macs)


def test_the_check_flags_an_instruction_bound_kernel():
    """int2's byte-layout GEMV (a byte load and a gather per code, 129 lane-instructions a byte) is over both
    budgets: the script must report it on both architectures and exit 1."""
    done = _sass_check("--kinds", "int2", "--layout", "bytes")
    assert done.returncode == 1 and "instruction- or L1-bound decode GEMV: " in done.stderr, done.stderr[-2000:]
    assert "int2 on sm_90" in done.stderr and "int2 on sm_89" in done.stderr
    _, share, per_byte, _ = _row(done.stdout, "_gemv int2 ", 90)
    assert share == 0 and per_byte > 41
    assert "_gemv_ints" not in done.stdout
