"""Reading a compiled kernel's main loop from its SASS: the parser on a fixed listing, and the whole check
(`benchmarks/triton_sass.py`, outside the interpreter, which cannot compile) on the decode GEMV."""

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


def test_tile_bytes_count_codes_and_group_scales():
    int4 = next(v for v in matmul_variants(["int4"], (False,), "first") if v.label.startswith("_gemv"))
    rows, cols = int4.constexprs["BLOCK_N"], int4.constexprs["BLOCK_K"]
    assert sass.tile_bytes(int4) == rows * cols / 2 + rows * cols / sass.TYPICAL_GROUP * 4
    sparse = next(v for v in matmul_variants(["int8"], (True,), "first") if v.label.startswith("_gemv"))
    assert sass.tile_bytes(sparse) == rows * cols / 2 + rows * cols / 8  # half the values, a position bit each


def test_the_check_reads_the_int4_decode_loop_and_flags_it_instruction_bound():
    """The int4 GEMV of today loads its codes a byte at a time and issues ~10x the H200's budget per byte: the
    check must see exactly that (when the kernel is rewritten to meet the budget, this test turns into the
    budget's guard)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--kinds", "int4", "--configs", "first"], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 1 and "instruction-bound decode GEMV: int4 on sm_89" in done.stderr, done.stderr[-2000:]
    line = next(row for row in done.stdout.splitlines() if row.startswith("_gemv int4") and "sm_90" in row)
    loads, share, per_byte = re.search(r"\s(8: \d+.*?)\s+(\d+)%\s+([0-9.]+)\s+7$", line).groups()
    assert int(share) == 0 and float(per_byte) > 7, line
