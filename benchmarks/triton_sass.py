"""The decode GEMV's main loop per storage kind, read from the SASS Triton emits for sm_89 and sm_90 (no GPU needed).

    python benchmarks/triton_sass.py [--kinds int4,nf4] [--dense-only] [--configs all|first] [--kernel gemv|gemm]

For each matmul variant (`edgec.kernels.triton.sass`): the main loop's instructions per
iteration and warp, its global loads by width, the share of loaded bytes that come in 128-bit
loads, and the lane-instructions it issues per stored weight byte beside the budget at which
the loop issues as fast as the GPU's memory delivers (7 on an H200, 41 on an RTX 4090). Exits 1
when the GEMV's best configuration of some kind is over an architecture's budget: that kernel
would be instruction-bound there, whatever the memory system does.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

ARCHS = (89, 90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default=None, help="storage kinds (default: all)")
    parser.add_argument("--configs", choices=("all", "first"), default="all",
                        help="every autotune configuration, or the first of each kernel")
    parser.add_argument("--kernel", choices=("gemv", "gemm"), default="gemv")
    parser.add_argument("--dense-only", action="store_true", help="leave out the 2:4 variants")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    warnings.filterwarnings("ignore", module="triton")

    from edgec.kernels.triton import resources, sass

    kinds = args.kinds.split(",") if args.kinds else None
    best: dict[tuple[str, int], float] = {}
    print(f"{'variant':<40} {'arch':>5} {'loop instr':>10} {'loads (bits: count)':>28} {'128-bit bytes':>13} "
          f"{'instr/byte':>10} {'budget':>6}")
    sparse = (False,) if args.dense_only else (False, True)
    for variant in resources.matmul_variants(kinds, sparse, configs=args.configs):
        if not variant.label.split()[0].startswith(f"_{args.kernel}"):
            continue
        kind = variant.label.split()[1]
        for arch in ARCHS:
            profile = sass.loop_profile(variant, arch)
            loads = ", ".join(f"{bits}: {count}" for bits, count in sorted(profile.loads.items()))
            best[(kind, arch)] = min(best.get((kind, arch), float("inf")), profile.per_weight_byte)
            print(f"{variant.label:<40} sm_{arch} {profile.instructions:>10} {loads:>28} "
                  f"{100 * profile.wide_load_share:>12.0f}% {profile.per_weight_byte:>10.1f} "
                  f"{sass.ISSUE_BUDGET[arch]:>6.0f}", flush=True)
    over = [f"{kind} on sm_{arch} ({value:.1f} > {sass.ISSUE_BUDGET[arch]:.0f})"
            for (kind, arch), value in best.items() if value > sass.ISSUE_BUDGET[arch]]
    if over and args.kernel == "gemv":
        sys.exit(f"instruction-bound decode GEMV: {', '.join(over)}")


if __name__ == "__main__":
    main()
