"""Weight storage formats: the grammar, the registry and one codec per format.

>>> from edgec.core.formats import parse_format
>>> fmt = parse_format("int4:g128")
>>> fmt.bits_per_weight((576, 1536))
4.125

Registration is by explicit import below; a new format is one new module
imported here, and the test suite then exercises it through `Format.examples`.
"""

from edgec.core.formats.base import Buffer, Format, format_grammar, parse_format, registered_families
from edgec.core.formats.dense import BFloat16, Float16
from edgec.core.formats.fp8 import FP8
from edgec.core.formats.int8 import Int8
from edgec.core.formats.int_group import Int2, Int3, Int4
from edgec.core.formats.nf4 import NF4
from edgec.core.formats.sparse24 import Sparse24

__all__ = [
    "Buffer", "Format", "format_grammar", "parse_format", "registered_families",
    "BFloat16", "Float16", "FP8", "Int8", "Int2", "Int3", "Int4", "NF4", "Sparse24",
]
