"""Opcode counts of a matmul kernel's compiled main loop, for tests that check what the compiler made of it."""

from __future__ import annotations

import os
import subprocess
import sys

_SCRIPT = """
import sys, warnings; warnings.filterwarnings("ignore")
from edgec.kernels.triton import resources, sass
kind, sparse, prefix, opcodes = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4].split(",")
variant = next(v for v in resources.matmul_variants([kind], (sparse,), "first") if v.label.startswith(prefix))
for arch in (89, 90):
    body = sass.main_loop(sass.parse_sass(resources.cuobjdump(resources.compile_cubin(variant, arch)[0], "-sass")))
    words = variant.constexprs["BLOCK_N"] * variant.constexprs["WORDS"] // (variant.options["num_warps"] * 32)
    print(arch, words, *(sum(i.opcode == op or i.opcode.startswith(op + ".") for i in body) for op in opcodes))
"""


def loop_opcodes(kind: str, sparse: bool, prefix: str, opcodes: tuple[str, ...]) -> dict[int, tuple[int, ...]]:
    """For sm_89 and sm_90: (code words per thread, then the count of each opcode) in the main loop of the first
    configuration of the matmul variant of storage kind `kind` whose label starts with `prefix`, compiled outside
    the interpreter (which cannot compile)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, kind, "1" if sparse else "0", prefix, ",".join(opcodes)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return {int(row[0]): tuple(int(v) for v in row[1:]) for row in (line.split() for line in done.stdout.splitlines())}
