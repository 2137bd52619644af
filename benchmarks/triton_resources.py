"""What every Triton kernel variant needs per GPU architecture, compiled ahead of time (no GPU needed).

    python benchmarks/triton_resources.py [--archs 80,86,89,90] [--kinds int4,nf4] [--dense-only]
                                          [--configs all|first] [--json resources.json]

Compiles the decode GEMV and prefill GEMM for every storage kind (dense and 2:4) with every
autotune configuration, and the small ops and attention kernels, for each compute capability
(`edgec.kernels.triton.resources`), then prints per variant and architecture: registers per
thread, stack bytes (local memory: > 0 means spilled registers, slow) and shared memory per
block, marking a variant that exceeds the architecture's shared memory (the autotuner skips
it there). Ends with counts, and fails (exit 1) if some kernel and kind is left with no
variant that fits an architecture, or a variant does not compile.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default="80,86,89,90", help="compute capabilities (80 A100, 86 RTX 30, "
                        "87 Jetson Orin, 89 RTX 40, 90 H100)")
    parser.add_argument("--kinds", default=None, help="storage kinds (default: all)")
    parser.add_argument("--dense-only", action="store_true", help="leave out the 2:4 variants")
    parser.add_argument("--configs", choices=("all", "first"), default="all",
                        help="every autotune configuration, or the first of each kernel")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    warnings.filterwarnings("ignore", module="triton")

    from edgec.kernels.triton import resources

    archs = [int(a) for a in args.archs.split(",")]
    unknown = [a for a in archs if a not in resources.MAX_SHARED]
    if unknown:
        sys.exit(f"unknown compute capability {unknown[0]}; choose among {sorted(resources.MAX_SHARED)}")
    kinds = args.kinds.split(",") if args.kinds else None
    sparse = (False,) if args.dense_only else (False, True)
    variants = list(resources.matmul_variants(kinds, sparse, args.configs)) + list(resources.ops_variants())
    start = time.perf_counter()
    rows, fitting = [], {}
    print(f"{'variant':<44}" + "".join(f"  {'sm_' + str(a) + ' reg/stack/shared':>26}" for a in archs))
    for variant in variants:
        cells, row = [], {"variant": variant.label}
        group = " ".join(variant.label.split()[:2])  # kernel and kind
        for arch in archs:
            try:
                res = resources.compile_variant(variant, arch)
            except Exception as exc:
                sys.exit(f"{variant.label} does not compile for sm_{arch}: {type(exc).__name__}: {exc}")
            fits = res.fits(arch)
            fitting.setdefault((group, arch), False)
            fitting[(group, arch)] |= fits
            row[f"sm_{arch}"] = {"registers": res.registers, "stack": res.stack, "shared": res.shared, "fits": fits}
            mark = "" if fits else " TOO BIG"
            cells.append(f"{res.registers:>5} /{res.stack:>5} /{res.shared:>7}{mark:>8}")
        rows.append(row)
        print(f"{variant.label:<44}" + "".join(f"  {c:>26}" for c in cells), flush=True)
    seconds = time.perf_counter() - start
    spilled = sum(1 for row in rows for a in archs if row[f"sm_{a}"]["stack"] > 0)
    too_big = sum(1 for row in rows for a in archs if not row[f"sm_{a}"]["fits"])
    print(f"\n{len(variants)} variants x {len(archs)} architectures compiled in {seconds:.0f} s; "
          f"{spilled} spill registers, {too_big} exceed shared memory")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"archs": archs, "rows": rows, "seconds": seconds}, f, indent=1)
    stranded = [f"{group} on sm_{arch}" for (group, arch), ok in fitting.items() if not ok]
    if stranded:
        sys.exit(f"no variant fits: {', '.join(stranded)}")


if __name__ == "__main__":
    main()
