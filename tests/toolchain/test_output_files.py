"""Outputs are written whole or not at all, with ordinary modes, and no temporary outlives its writer."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from edgec.core.output_files import TEMPORARY_MARK, atomic_output


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_file_and_a_folder_appear_whole_with_the_umask_modes(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_output(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_output(tmp_path / "folder", folder=True) as tmp:
            (tmp / "inner.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "folder" / "inner.json").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.bin"]


def test_an_error_leaves_nothing(tmp_path):
    for folder in (False, True):
        with pytest.raises(RuntimeError), atomic_output(tmp_path / "out", folder=folder) as tmp:
            (tmp / "x").write_text("partial") if folder else tmp.write_text("partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_the_next_write_removes_temporaries_of_killed_writers_only(tmp_path):
    dead = tmp_path / f".big.edgec{TEMPORARY_MARK}{_dead_pid()}"
    dead.write_bytes(b"half a file")
    killed_folder = tmp_path / f".out{TEMPORARY_MARK}{_dead_pid()}"
    killed_folder.mkdir()
    (killed_folder / "model.safetensors").write_bytes(b"half")
    alive = tmp_path / f".other.edgec{TEMPORARY_MARK}{os.getppid()}"  # a writer still running
    alive.write_bytes(b"in progress")
    with atomic_output(tmp_path / "new.edgec") as tmp:
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["new.edgec", alive.name])


def test_sigterm_unwinds_like_ctrl_c_and_removes_the_temporary(tmp_path):
    out = tmp_path / "out.edgec"
    script = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from edgec.cli import _terminate\n"
        "from edgec.core.output_files import atomic_output\n"
        "signal.signal(signal.SIGTERM, _terminate)\n"
        "with atomic_output(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_text('partial')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert [p.name for p in tmp_path.iterdir()] == [f".out.edgec{TEMPORARY_MARK}{proc.pid}"]  # seen, named for its writer
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_exits_143_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edgec", "profile", "--quick", "--backend", "reference",
                             "-o", str(tmp_path / "host.yaml")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until it is timing kernels, past the imports
        line = proc.stderr.readline()
        if line.startswith("timing kernels"):
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "edgec: terminated" in rest
    assert list(tmp_path.iterdir()) == []
