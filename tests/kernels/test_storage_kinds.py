"""One numbering of the storage kinds: the C header is generated from the Python table, and the
compiled extension and the Triton kernels agree with it."""

from pathlib import Path

import pytest

from edgec.core.storage_kinds import STORAGE_KINDS, c_header
from edgec.kernels import cpu

HEADER = Path(__file__).parents[2] / "kernels" / "cpu" / "storage_kinds.h"


def test_the_c_header_is_generated_from_the_table():
    assert HEADER.read_text() == c_header(), "run `python -m edgec.core.storage_kinds > kernels/cpu/storage_kinds.h`"


@pytest.mark.skipif(not cpu.available(), reason="no compiled CPU kernels")
def test_the_compiled_extension_numbers_kinds_as_the_table():
    from edgec.kernels.cpu.extension import extension

    assert extension().KINDS == {name: kind.code for name, kind in STORAGE_KINDS.items()}


def test_every_triton_decoder_is_used():  # codes are distinct by construction (enumerate)
    assert {k.decoder for k in STORAGE_KINDS.values()} == set(range(6))
