"""The wheel carries every module and data file at its mapped path, and nothing else.

pyproject.toml lists its packages explicitly, so a new sub-package that is not added
there silently vanishes from the wheel; these tests catch that.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# source folder -> package path inside the wheel (pyproject.toml [tool.setuptools] package-dir)
MAPPING = {
    "toolchain": "edgec",
    "exporters": "edgec/exporters",
    "runtime_py": "edgec/runtime",
    "kernels": "edgec/kernels",
    "core": "edgec/core",
    "devices": "edgec/devices",
}
PACKAGE_DATA = {"toolchain/data": ["*.txt", "README.md"], "devices": ["*.yaml", "README.md"]}
NAMED_DATA = ["edgec/data/pride_and_prejudice.txt", "edgec/data/sense_and_sensibility.txt", "edgec/devices/README.md"]
_SKIP = {".git", "build", "dist", "__pycache__", ".pytest_cache", ".hypothesis", ".venv"}


def _wheel_path(source: Path) -> str:
    rel = source.relative_to(ROOT)
    return "/".join([MAPPING[rel.parts[0]], *rel.parts[1:]])


def _sources(pattern: str, folders) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    # Build from a clean copy so that a stale build/ or *.egg-info in the checkout can
    # neither add files to the wheel nor be left behind by the test.
    src = tmp_path_factory.mktemp("src") / "edgec"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in _SKIP or n.endswith(".egg-info")])
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", str(src), "-w", str(out)],
        capture_output=True, text=True, timeout=300, cwd=out,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("edgec-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        assert zf.testzip() is None
        return set(zf.namelist())


def test_wheel_carries_every_python_module_at_its_mapped_path(wheel_names):
    sources = _sources("*.py", MAPPING)
    assert len(sources) > 10
    missing = [f"{s.relative_to(ROOT)} -> {_wheel_path(s)}" for s in sources if _wheel_path(s) not in wheel_names]
    assert not missing, "modules missing from the wheel:\n" + "\n".join(missing)


def test_wheel_has_no_module_without_a_source(wheel_names):
    expected = {_wheel_path(s) for s in _sources("*.py", MAPPING)}
    extra = sorted(n for n in wheel_names if n.endswith(".py") and n not in expected)
    assert not extra


def test_wheel_carries_every_package_data_file(wheel_names):
    sources = [p for folder, patterns in PACKAGE_DATA.items() for pat in patterns for p in (ROOT / folder).glob(pat)]
    missing = [_wheel_path(s) for s in sources if _wheel_path(s) not in wheel_names]
    assert not missing


@pytest.mark.parametrize("name", NAMED_DATA)
def test_wheel_carries_the_named_data_files(wheel_names, name):
    assert name in wheel_names


def test_wheel_has_only_the_package_and_its_metadata(wheel_names):
    tops = {n.split("/", 1)[0] for n in wheel_names}
    assert tops == {"edgec", "edgec-0.1.0.dist-info"}
    assert not [n for n in wheel_names if "tests" in n.split("/") or n.rsplit("/", 1)[-1].startswith("test_")]
    assert not [n for n in wheel_names if "__pycache__" in n or n.endswith(".pyc")]


def test_runtime_and_kernels_import_without_torch_or_transformers(tmp_path):
    code = (
        "import sys, pkgutil, importlib\n"
        "import edgec.runtime, edgec.core.formats, edgec.kernels\n"
        "for m in pkgutil.walk_packages(edgec.runtime.__path__, 'edgec.runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
