"""Error types shared by every layer of edgec.

They live in the runtime because it is the lowest layer that the toolchain, the
exporters and apps all import; each carries a one-line message naming the
culprit (a file, a field, a layer or a format string).
"""


class EdgecError(Exception):
    """Base of every error edgec raises on bad input; the CLI prints it as one line."""


class FormatError(EdgecError, ValueError):
    """A format string is unknown or malformed, or a tensor does not fit a format."""


class ContainerError(EdgecError, ValueError):
    """A `.edgec` file is missing, truncated, corrupt, hostile or of an unsupported version."""
