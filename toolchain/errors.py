"""Errors the toolchain raises on bad input (re-exported from the runtime's hierarchy)."""

from edgec.runtime.errors import EdgecError, FormatError


class ModelError(EdgecError):
    """A model path, file or architecture edgec cannot load; the message names it."""


__all__ = ["EdgecError", "FormatError", "ModelError"]
