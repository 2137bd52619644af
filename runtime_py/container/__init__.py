"""The `.edgec` container: layout constants and the mmap reader (spec: docs/FORMAT.md)."""

from edgec.runtime.container.reader import MISMATCH, NOT_CHECKED, VERIFIED, EdgecFile, TensorEntry, open_container

__all__ = ["EdgecFile", "TensorEntry", "open_container", "MISMATCH", "NOT_CHECKED", "VERIFIED"]
