"""Where an `edgec` command's resident memory grows: the Python stack at each new high.

    python benchmarks/memory_trace.py plan --device host --model MODEL --methods rtn -o plan.json

Runs the command in this process while a thread samples the resident size every 20 ms; each
time it passes the previous high by `--step` MB (default 150) the main thread's innermost edgec
frames are recorded. The list, printed to stderr when the command ends, shows which call made
each rise: the tool that found the whole-vocabulary tensors and the clip search's temporaries
(docs/scale.md). Peaks from freed memory that glibc kept count too, as they do for the kernel.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback

from edgec.core.memory import current_rss_bytes

FRAMES = 6


def _edgec_frames(frame) -> list[str]:
    stack = traceback.extract_stack(frame)
    ours = [f for f in stack if "edgec" in f.filename or "/toolchain/" in f.filename]
    return [f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in ours[-FRAMES:]]


def _sample(step: float, rises: list[tuple[float, float, list[str]]], start: float) -> None:
    main = threading.main_thread().ident
    high = 0
    while True:
        rss = current_rss_bytes()
        if rss > high + step:
            high = rss
            frame = sys._current_frames().get(main)
            rises.append((rss, time.perf_counter() - start, _edgec_frames(frame) if frame else []))
            del frame  # a frame held while sleeping would keep every local of its stack alive after it returns
        time.sleep(0.02)


def main() -> None:
    args = sys.argv[1:]
    step = 150e6
    if args[:1] == ["--step"]:
        step, args = float(args[1]) * 1e6, args[2:]
    from edgec.cli import main as edgec

    rises: list[tuple[float, float, list[str]]] = []
    threading.Thread(target=_sample, args=(step, rises, time.perf_counter()), daemon=True).start()
    code = 0
    try:
        edgec(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for rss, seconds, frames in rises:
            print(f"{rss / 1e9:6.2f} GB at {seconds:7.1f} s  " + " <- ".join(reversed(frames)), file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
