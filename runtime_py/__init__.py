"""edgec.runtime: what an app embeds to read and run edgec models.

Importing it needs numpy only; it never imports torch or transformers.
The format codecs (`edgec.core.formats`) are the single source of truth
for how every weight format is stored, packed and dequantized.
"""

from edgec.core.errors import ContainerError, EdgecError, FormatError
from edgec.runtime.model import RuntimeModel, load

__all__ = ["ContainerError", "EdgecError", "FormatError", "RuntimeModel", "load"]
