"""docs/FORMAT.md's worked examples are what the codecs and the writer produce today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgec.core.formats import parse_format, registered_families

SCRIPT = Path(__file__).parents[2] / "docs" / "format_examples.py"


def load_script():
    spec = importlib.util.spec_from_file_location("format_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_format_md_examples_match_the_codecs_byte_for_byte():
    script = load_script()
    doc = script.DOC.read_text()
    assert doc == script.document_with_examples(doc), "run `python docs/format_examples.py --write`"


def test_every_format_family_has_a_worked_example():
    families = {parse_format(text).family for text in load_script().FORMATS}
    assert families == set(registered_families())
