"""Storage kinds: how the kernels read a weight's values matrix, numbered once for Python, C and Triton.

A format's stored buffers reach the kernels as one storage kind (a values matrix of codes or
16-bit values, with per-row or per-group scales and, for `*_asym`, group minima), plus 2:4
metadata where the weight is sparse (`edgec.kernels.cpu.conversion.storage_parts`).

`STORAGE_KINDS` is the one table. The C kernels' `enum Kind` is generated from it into
`kernels/cpu/storage_kinds.h` (`python -m edgec.core.storage_kinds > kernels/cpu/storage_kinds.h`;
a test fails when the header is stale), and the Triton kernels take each kind's `decoder` and
`bits` from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageKind:
    """One way the kernels decode stored values."""

    name: str     # e.g. "int4_asym"; the C enumerator is KIND_<NAME>
    code: int     # its number in C's enum Kind and in Python
    bits: int     # bits per stored value
    asym: bool    # stored as code * scale + group minimum
    decoder: int  # the Triton decoder: 0 f16, 1 bf16, 2 fp8, 3 int8, 4 B-bit integer codes, 5 nf4


_KINDS = [("f16", 16, False, 0), ("bf16", 16, False, 1), ("fp8", 8, False, 2), ("int8", 8, False, 3),
          ("int2", 2, False, 4), ("int3", 3, False, 4), ("int4", 4, False, 4),
          ("int2_asym", 2, True, 4), ("int3_asym", 3, True, 4), ("int4_asym", 4, True, 4),
          ("nf4", 4, False, 5)]
STORAGE_KINDS: dict[str, StorageKind] = {name: StorageKind(name, code, bits, asym, decoder)
                                         for code, (name, bits, asym, decoder) in enumerate(_KINDS)}


def c_header() -> str:
    """`kernels/cpu/storage_kinds.h`: the C enum and name table of `STORAGE_KINDS`."""
    kinds = list(STORAGE_KINDS.values())
    enum = "".join(f"    KIND_{k.name.upper()} = {k.code},\n" for k in kinds)
    names = ", ".join(f'[KIND_{k.name.upper()}] = "{k.name}"' for k in kinds)
    return ("/* Generated from edgec.core.storage_kinds (python -m edgec.core.storage_kinds); do not edit. */\n"
            "#ifndef EDGEC_STORAGE_KINDS_H\n#define EDGEC_STORAGE_KINDS_H\n\n"
            f"enum Kind {{\n{enum}    KIND_COUNT = {len(kinds)}\n}};\n\n"
            f"#define EDGEC_KIND_NAMES {{ {names} }}\n\n#endif\n")


if __name__ == "__main__":
    print(c_header(), end="")
