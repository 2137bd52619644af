"""The matmul kernels' main loops per storage kind, read from the SASS Triton emits for sm_89 and sm_90 (no GPU needed).

    python benchmarks/triton_sass.py [--kinds int4,nf4] [--dense-only] [--configs all|first] [--kernel gemv|gemm]
                                     [--layout all|bytes|words]

For each matmul variant (`edgec.kernels.triton.sass`): the main loop's instructions per
iteration and warp, its global loads by width, the share of loaded bytes that come in 128-bit
loads, the bytes it moves through L1 and shared memory per stored weight byte, and

* decode GEMV (`--kernel gemv`): the lane-instructions it issues per stored weight byte beside
  the budget at which the loop issues as fast as the GPU's memory delivers (7 on an H200, 41 on
  an RTX 4090), which is also the budget for its L1 and shared-memory bytes (nf4, decoded by
  table lookup, is held to 70 % of an H200's copy bandwidth instead: 11.1). Exits 1 when the
  best configuration of some kind (the one furthest inside both budgets) is over either on an
  architecture: that kernel would be bound by issue or by L1, whatever the memory system does.
* prefill GEMM (`--kernel gemm`): the multiply-adds per lane-instruction beside the least that
  lets the tensor cores run at half their peak (7.4 on an H200, 1.0 on an RTX 4090). Exits 1
  when the best configuration of some kind is under it.

`--layout bytes` keeps only the kernels that read codes as stored, `words` only those that read
the word layout.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

ARCHS = (89, 90)


def _layout(kernel: str) -> str:
    return "bytes" if kernel in ("_gemv", "_gemm") else "words"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default=None, help="storage kinds (default: all)")
    parser.add_argument("--configs", choices=("all", "first"), default="all",
                        help="every autotune configuration, or the first of each kernel")
    parser.add_argument("--kernel", choices=("gemv", "gemm"), default="gemv")
    parser.add_argument("--layout", choices=("all", "bytes", "words"), default="all",
                        help="the kernels reading codes as stored, those reading the word layout, or both")
    parser.add_argument("--dense-only", action="store_true", help="leave out the 2:4 variants")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("unset TRITON_INTERPRET: the interpreter's kernels cannot be compiled")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    warnings.filterwarnings("ignore", module="triton")

    from edgec.kernels.triton import resources, sass

    kinds = args.kinds.split(",") if args.kinds else None
    prefill = args.kernel == "gemm"
    best: dict[tuple[str, int], tuple[float, float, float, float]] = {}  # (share of budget, figure, traffic, budget)
    print(f"{'variant':<40} {'arch':>5} {'loop instr':>10} {'loads (bits: count)':>28} {'128-bit bytes':>13} "
          f"{'MAC/instr' if prefill else 'instr/byte':>10} {'L1 B/byte':>9} {'budget':>6}")
    sparse = (False,) if args.dense_only else (False, True)
    for variant in resources.matmul_variants(kinds, sparse, configs=args.configs):
        kernel, kind = variant.label.split()[:2]
        if not kernel.startswith(f"_{args.kernel}") or args.layout not in ("all", _layout(kernel)):
            continue
        for arch in ARCHS:
            profile = sass.loop_profile(variant, arch)
            loads = ", ".join(f"{bits}: {count}" for bits, count in sorted(profile.loads.items()))
            traffic = profile.traffic_per_weight_byte
            if prefill:
                figure = profile.macs_per_instruction
                budget = sass.PREFILL_MIN_MACS[arch]
                share = budget / figure if figure else float("inf")
            else:
                figure = profile.per_weight_byte
                budget, traffic_budget = sass.decode_budgets(kind, arch)
                share = max(figure / budget, traffic / traffic_budget)
            if share < best.get((kind, arch), (float("inf"),))[0]:
                best[(kind, arch)] = (share, figure, traffic, budget)
            print(f"{variant.label:<40} sm_{arch} {profile.instructions:>10} {loads:>28} "
                  f"{100 * profile.wide_load_share:>12.0f}% {figure:>10.1f} {traffic:>9.1f} {budget:>6.1f}",
                  flush=True)
    failing = {key: value for key, value in best.items() if value[0] > 1}
    if prefill and failing:
        sys.exit("issue-bound prefill GEMM: " + ", ".join(
            f"{kind} on sm_{arch} ({figure:.1f} < {budget:.1f})" for (kind, arch), (_, figure, _, budget) in failing.items()))
    if failing:
        sys.exit("instruction- or L1-bound decode GEMV: " + ", ".join(
            f"{kind} on sm_{arch} ({figure:.1f} instructions, {traffic:.1f} L1 bytes a byte; budget {budget:.1f})"
            for (kind, arch), (_, figure, traffic, budget) in failing.items()))


if __name__ == "__main__":
    main()
