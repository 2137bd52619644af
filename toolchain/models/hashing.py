"""Content hashes that identify a model's weights (plan files and caches are keyed by them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weight file, or of a folder's weight files (names and contents, sorted)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        digest.update(f.name.encode())
        digest.update(bytes.fromhex(file_sha256(f)))
    return digest.hexdigest()
