"""Handing freed heap memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc's malloc_trim; a no-op elsewhere).

    Block-by-block calibration frees tens of MB of activations and statistics per block;
    glibc keeps such freed chunks in its arenas, so without a trim the resident size grows
    block after block (by about 450 MB over SmolLM2's 30 blocks) although nothing is held.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
