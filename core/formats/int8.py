"""int8: symmetric 8-bit integers with one scale per output channel.

Stored buffers for a weight (N, K):

* ``qdata``: int8 (N, K), two's complement, w ≈ qdata * scale;
* ``scale``: float16 (N, 1), absmax of the row / 127.5 (levels -128..127 all used).
"""

from __future__ import annotations

from edgec.core.errors import FormatError
from edgec.core.formats.base import Format, parse_options
from edgec.core.formats.int_group import GroupwiseInt


class Int8(GroupwiseInt, name="int8"):
    """Per-output-channel symmetric int8."""

    bits = 8

    def __init__(self) -> None:
        super().__init__(group=None, asym=False)

    @classmethod
    def from_options(cls, options: str) -> Format:
        if parse_options(options, cls.family):
            raise FormatError("int8 takes no options (it is per output channel, symmetric)")
        return cls()

    @classmethod
    def grammar(cls) -> str:
        return "int8"

    @classmethod
    def examples(cls) -> list[Format]:
        return [cls()]

    def __str__(self) -> str:
        return "int8"
