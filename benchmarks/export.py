"""Export figures on the default model: time, peak memory, file size against the plan, open time.

    python benchmarks/export.py [--json export.json] [--work DIR]

1. `edgec plan --device rtx4090` (reads the sensitivity cache if an earlier plan filled it),
   then `edgec compress --plan` of it.
2. `edgec export --compressed` of that folder to `.edgec`, and to ONNX: wall time and peak RSS
   (/usr/bin/time), and the `.edgec` file's size against the plan's predicted weight bytes, split
   into stored buffers, header and alignment padding.
3. `edgec export --format int4:g128` (RTN, compressing on the way): wall time and peak RSS.
4. Opening the `.edgec` file (mmap, a view of every buffer) against loading the same buffers
   from a safetensors file written in this run, in this process with the page cache warm:
   median of 7 runs each, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cli_runner import edgec

RUNS = 7


def median_seconds(fn, runs: int = RUNS) -> float:
    fn()  # warm the page cache and the code paths
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def open_figures(edgec_file: Path, work: Path) -> dict:
    """Open time of the .edgec file against safetensors holding exactly the same buffers."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from edgec.runtime.container import open_container

    with open_container(edgec_file, verify=False) as f:
        arrays = {f"{name}::{key}": array.copy() for name in f.tensors for key, array in f.buffers(name).items()}
    st_file = work / "same-buffers.safetensors"
    save_file(arrays, str(st_file))
    del arrays

    def open_edgec(verify: bool) -> None:
        with open_container(edgec_file, verify=verify) as f:
            for name in f.tensors:
                f.buffers(name)

    def open_safetensors_lazily() -> None:
        with safe_open(str(st_file), framework="numpy") as handle:
            for key in handle.keys():
                handle.get_tensor(key)

    edgec_open = median_seconds(lambda: open_edgec(False))
    edgec_verified = median_seconds(lambda: open_edgec(True))
    st_load = median_seconds(lambda: load_file(str(st_file)))
    st_lazy = median_seconds(open_safetensors_lazily)
    return {"edgec_open_s": edgec_open, "edgec_open_verified_s": edgec_verified,
            "safetensors_load_file_s": st_load, "safetensors_safe_open_s": st_lazy,
            "safetensors_bytes": st_file.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--skip-onnx", action="store_true", help="leave out the ONNX export")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgec-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict = {}

    plan_path = work / "plan.json"
    done, seconds, _ = edgec("plan", "--device", "rtx4090", "-o", str(plan_path), "--json")
    plan = json.loads(done.stdout)
    figures["plan_s"] = seconds
    compressed = work / "compressed"
    _, seconds, rss = edgec("compress", "--plan", str(plan_path), "-o", str(compressed))
    figures["compress"] = {"seconds": seconds, "peak_rss": rss}
    print(f"plan {figures['plan_s']:.1f} s; compress --plan {seconds:.1f} s, peak RSS {rss / 1e9:.2f} GB", flush=True)

    out = work / "smollm2.edgec"
    done, seconds, rss = edgec("export", "--compressed", str(compressed), "--to", "edgec", "-o", str(out), "--json")
    written = json.loads(done.stdout)["outputs"]["edgec"]
    predicted = plan["totals"]["weights_bytes"]
    figures["edgec_export"] = {"seconds": seconds, "peak_rss": rss, **written, "plan_weights_bytes": predicted,
                               "over_plan": written["bytes"] / predicted - 1}
    print(f"export --to edgec: {seconds:.1f} s, peak RSS {rss / 1e9:.2f} GB; file {written['bytes']:,} B = "
          f"plan's {predicted:,} B {100 * (written['bytes'] / predicted - 1):+.3f} % "
          f"(buffers {written['payload_bytes']:,}, header {written['header_bytes']:,}, padding {written['padding_bytes']:,})",
          flush=True)

    if not args.skip_onnx:
        onnx_out = work / "smollm2.onnx"
        done, seconds, rss = edgec("export", "--compressed", str(compressed), "--to", "onnx", "-o", str(onnx_out), "--json")
        figures["onnx_export"] = {"seconds": seconds, "peak_rss": rss, **json.loads(done.stdout)["outputs"]["onnx"]}
        print(f"export --to onnx (with validation): {seconds:.1f} s, peak RSS {rss / 1e9:.2f} GB, "
              f"file {onnx_out.stat().st_size:,} B", flush=True)

    direct = work / "int4.edgec"
    _, seconds, rss = edgec("export", "--format", "int4:g128", "--to", "edgec", "-o", str(direct))
    figures["edgec_export_int4_rtn"] = {"seconds": seconds, "peak_rss": rss, "bytes": direct.stat().st_size}
    print(f"export --format int4:g128 --to edgec (RTN on the way): {seconds:.1f} s, peak RSS {rss / 1e9:.2f} GB, "
          f"file {direct.stat().st_size:,} B", flush=True)

    opened = open_figures(out, work)
    figures["open"] = opened
    print(f"open (warm page cache, median of {RUNS}): .edgec mmap {1e3 * opened['edgec_open_s']:.2f} ms, "
          f"with every checksum {1e3 * opened['edgec_open_verified_s']:.1f} ms; safetensors load_file "
          f"{1e3 * opened['safetensors_load_file_s']:.1f} ms (x{opened['safetensors_load_file_s'] / opened['edgec_open_s']:.0f}), "
          f"safe_open + get_tensor {1e3 * opened['safetensors_safe_open_s']:.1f} ms "
          f"(x{opened['safetensors_safe_open_s'] / opened['edgec_open_s']:.0f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    sys.exit(main())
