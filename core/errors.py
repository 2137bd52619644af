"""Error types shared by every layer of edgec.

They live in `edgec.core`, the bottom layer every other one imports; each carries
a one-line message naming the culprit (a file, a field, a layer or a format string).
"""


class EdgecError(Exception):
    """Base of every error edgec raises on bad input; the CLI prints it as one line."""


class FormatError(EdgecError, ValueError):
    """A format string is unknown or malformed, or a tensor does not fit a format."""


class ContainerError(EdgecError, ValueError):
    """A `.edgec` file is missing, truncated, corrupt, hostile or of an unsupported version."""


class ModelError(EdgecError):
    """A model path, file or architecture edgec cannot load; the message names it."""
