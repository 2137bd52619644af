"""Process memory: handing freed heap memory back to the operating system, and reading the resident size.

Building a tokenizer parses megabytes of JSON and frees most of what it allocated, preparing
weights frees temporaries, and block-by-block calibration frees tens of MB of activations and
statistics per block; glibc keeps such freed blocks in the process (26 MB of resident memory
after SmolLM2's tokenizer; about 450 MB over SmolLM2's 30 calibration blocks). `malloc_trim(0)`
hands them back. On other C libraries this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only; musl has none
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Give freed heap memory back to the OS (glibc's malloc_trim); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def current_rss_bytes() -> int:
    """This process's resident memory now (Linux /proc), else its peak so far (getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # POSIX only; imported here so that the runtime still imports on Windows

        scale = 1 if os.uname().sysname == "Darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
