"""Returning freed heap memory to the operating system, where the C library allows it.

Building a tokenizer parses megabytes of JSON and frees most of what it allocated, and
preparing weights frees temporaries; glibc keeps such freed blocks in the process (26 MB
of resident memory after SmolLM2's tokenizer). `malloc_trim(0)` hands them back. On
other C libraries this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
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
