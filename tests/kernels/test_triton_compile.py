"""The Triton kernels compile for the GPUs the device profiles name, and fit them: an ahead-of-time
compile (no GPU needed) per architecture, with the registers, spills and shared memory it reports.

Triton's interpreter runs the kernels' Python and misses what only the compiler checks (a kernel
reading a plain global, a tile too large for shared memory, registers spilled to local memory);
these tests run `benchmarks/triton_resources.py` (outside the interpreter, which cannot compile)
and check every variant it reports.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "triton_resources.py"
HEADLINE = "int4,int4_asym,nf4,fp8,int8,f16"


def _resources(tmp_path, *args: str) -> dict:
    out = tmp_path / "resources.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True,
                          env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _problems(report: dict) -> list[str]:
    return [f"{row['variant']} on {arch}: {figures}" for row in report["rows"]
            for arch, figures in row.items() if arch != "variant" and (figures["stack"] or not figures["fits"])]


def test_every_kernel_and_storage_kind_compiles_without_spilling(tmp_path):
    """Decode and prefill for every kind, dense and 2:4 (the first autotune configuration of each), and the
    small ops and attention, for an A100 and an H100."""
    report = _resources(tmp_path, "--archs", "80,90", "--configs", "first")
    # kinds x (dense, 2:4) x (GEMV, GEMM); the word-layout GEMV of every dense kind (nf4's also in groups of 64 and
    # 32) and its GEMM in 16-, 8- and 4-word chunks (16-bit kinds: 16 and 8), int3's GEMV
    # also in 4-word chunks, and for the four 3- and 2-bit kinds both in groups of 32;
    # the 2:4 GEMV and GEMM of the seven integer kinds (the 2:4 word layout) and of fp16, bf16, fp8 and nf4 (as
    # stored), and the 2:4 GEMV of the five int8, int4 and int3 kinds in K = 576's narrower chunks; the ops: 2
    # RMSNorm, SwiGLU, and per head size (64, 128) rotary, decode attention (whole, split, combine) and the tiled
    # attention's query blocks (2, 1)
    assert len(report["rows"]) == (11 * 2 * 2 + 11 + 2 + (9 * 3 + 2 * 2) + 2 + 4 * 2 + (7 + 4) * 2 + 5 + 3
                                   + (4 + 2) + (4 + 1))
    assert _problems(report) == []


def test_every_autotune_configuration_fits_every_gpu(tmp_path):
    """Every configuration of the formats a plan mostly picks, on every architecture, including the RTX 30/40
    (99 KB of shared memory), so that autotuning never loses a configuration and none spills."""
    report = _resources(tmp_path, "--archs", "80,86,87,89,90", "--kinds", HEADLINE, "--dense-only")
    assert {arch for row in report["rows"] for arch in row} >= {"sm_80", "sm_86", "sm_87", "sm_89", "sm_90"}
    assert _problems(report) == []
