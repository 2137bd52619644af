"""Running the `edgec` CLI from a benchmark, with its wall time and peak memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time


def timed(command: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run `command`; return the process, its wall seconds and its peak RSS in bytes (exits on failure)."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done, seconds, int(done.stderr.strip().splitlines()[-1]) * 1024


def edgec(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run the CLI; return the process, its wall seconds and its peak RSS in bytes (exits on failure)."""
    return timed([sys.executable, "-m", "edgec", *args], env)
