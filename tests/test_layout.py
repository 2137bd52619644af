"""The checkout's folders never shadow installed packages of the same name (docs/layout.md).

`python -m pytest`, `python -m edgec` and `python -c ...` put the working directory first on
`sys.path`, and pytest puts `tests/` there too. A folder with an `__init__.py` in either is a
regular package that wins over an installed package of its name (transformers imports Hugging
Face's `kernels`, which the folder `kernels/` once shadowed). So those folders carry no
`__init__.py`: a folder without one is only a namespace portion, and a regular package found
later on `sys.path` wins.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folders on sys.path when the project's commands run from the checkout: the root, and tests/ under pytest.
ON_SYS_PATH = [ROOT, ROOT / "tests"]
# Folders on sys.path whose names PyPI already has (or an installed package imports), each checked
# against a stand-in installed package of that name. To extend: add the folder's name here.
SHADOWABLE = ["kernels", "exporters", "core", "benchmarks", "examples"]
# The only regular packages allowed there: names no PyPI package has (checked when each was added).
# Before adding one, check the name on PyPI; if it is taken, keep the folder free of `__init__.py`.
REGULAR = {"runtime_py", "devices"}


@pytest.mark.parametrize("name", SHADOWABLE)
def test_an_installed_package_wins_over_the_checkout_folder_of_its_name(tmp_path, name):
    site = tmp_path / "site"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text("STAND_IN = True\n")
    done = subprocess.run([sys.executable, "-c", f"import {name}; print(getattr({name}, 'STAND_IN', False))"],
                          cwd=ROOT, env={"PYTHONPATH": str(site), "PATH": ""}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True", f"`import {name}` from the checkout found the folder {name}/"


def test_no_folder_on_the_path_is_a_regular_package_unless_its_name_is_free():
    regular = sorted(str(d.relative_to(ROOT)) for base in ON_SYS_PATH for d in base.iterdir()
                     if d.is_dir() and (d / "__init__.py").exists() and d.name not in REGULAR)
    assert regular == [], "these folders shadow installed packages of their names: " + ", ".join(regular)


def test_transformers_imports_beside_edgec_from_the_checkout():
    done = subprocess.run([sys.executable, "-c", "import edgec.kernels, edgec.exporters, transformers.activations"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
