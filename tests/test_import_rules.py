"""The layer rules of docs/architecture.md, checked by reading every module's imports (no import is run).

Each folder is one layer; an import is allowed when its target's layer is in the importer's list.
Imports inside functions count too (a lazy import is still a dependency); the declared
exceptions are listed in `EXCEPTIONS` with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> the import-name prefix it is mapped to (pyproject.toml package-dir)
LAYERS = {"core": "edgec.core", "kernels": "edgec.kernels", "runtime_py": "edgec.runtime",
          "exporters": "edgec.exporters", "devices": "edgec.devices", "toolchain": "edgec"}
ALLOWED = {  # layer -> the edgec layers it may import
    "core": {"core"},
    "kernels": {"core", "kernels"},
    "runtime_py": {"core", "kernels", "runtime_py"},
    "exporters": {"core", "kernels", "runtime_py", "exporters"},
    "devices": {"core", "devices"},
    "toolchain": set(LAYERS),
}
FORBIDDEN_PACKAGES = {  # layer -> third-party packages it must not import
    "core": {"torch", "transformers", "triton"},
    "runtime_py": {"torch", "transformers"},
}
EXCEPTIONS = {
    # The triton backend runs Triton kernels, which take torch tensors; it imports torch only when chosen.
    ("runtime_py/backends/triton.py", "torch"),
    ("runtime_py/backends/triton_decoder.py", "torch"),
    ("runtime_py/backends/triton_graph.py", "torch"),
}


def layer_of_module(name: str) -> str | None:
    """The layer an `edgec...` import name belongs to (longest mapped prefix), None for other packages."""
    if name != "edgec" and not name.startswith("edgec."):
        return None
    best = max((prefix for prefix in LAYERS.values() if name == prefix or name.startswith(prefix + ".")), key=len)
    return next(folder for folder, prefix in LAYERS.items() if prefix == best)


def imports(path: Path) -> set[str]:
    """Every module name `path` imports, anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            if node.module == "edgec":  # `from edgec import planner`: the names are modules
                names.update(f"edgec.{alias.name}" for alias in node.names)
    return names


def modules() -> list[tuple[str, Path]]:
    return [(folder, path) for folder in LAYERS for path in sorted((ROOT / folder).rglob("*.py"))]


def violations(folder: str, path: Path, rel: str) -> list[str]:
    """The imports of `path` (known as `rel`, in layer `folder`) that break the rules."""
    found = []
    for name in sorted(imports(path)):
        layer = layer_of_module(name)
        if layer is not None and layer not in ALLOWED[folder]:
            found.append(f"{rel} imports {name} (layer {layer})")
        top = name.split(".")[0]
        if top in FORBIDDEN_PACKAGES.get(folder, ()) and (rel, top) not in EXCEPTIONS:
            found.append(f"{rel} imports {top}")
    return sorted(set(found))


@pytest.mark.parametrize("folder", list(LAYERS))
def test_each_layer_imports_only_what_it_may(folder):
    found = [v for f, path in modules() if f == folder for v in violations(f, path, path.relative_to(ROOT).as_posix())]
    assert not found, "\n".join(found)


def test_the_checker_sees_lazy_and_aliased_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy\nfrom edgec.core.formats import Format\n"
                     "def f():\n    from edgec.planner import plan\n    import torch.nn as nn\n")
    assert violations("runtime_py", probe, "runtime_py/probe.py") == [
        "runtime_py/probe.py imports edgec.planner (layer toolchain)", "runtime_py/probe.py imports torch"]
    assert violations("toolchain", probe, "toolchain/probe.py") == []
