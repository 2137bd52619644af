"""Writing an output whole or not at all: a temporary beside it, renamed into place when complete.

Every file or folder edgec writes for a user (an `.edgec` file, a compressed model folder, a
plan, a plot, a profile, a cache entry) goes through `atomic_output`:

* The temporary is named `.NAME.edgec-tmp-PID` beside the output, so a person who sees one
  knows what it is, and so a later run can tell whether its writer is still alive.
* An exception, Ctrl-C or SIGTERM (which `edgec.cli` turns into the same interrupt) removes it.
* SIGKILL and power loss cannot be caught: the next `atomic_output` into the same folder
  removes every temporary there whose process is gone.
* The output gets the mode any other tool's output gets: 0666 for files and 0777 for folders,
  less the umask (a private temporary folder would otherwise stay 0700).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_MARK = ".edgec-tmp-"


def temporary_beside(output: Path) -> Path:
    """This process's temporary for `output`: `.NAME.edgec-tmp-PID` in the same folder."""
    return output.parent / f".{output.name}{TEMPORARY_MARK}{os.getpid()}"


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries in `folder` whose writing process is gone (or is this one); returns them."""
    removed = []
    for path in folder.glob(f".*{TEMPORARY_MARK}*"):
        pid = path.name.rpartition(TEMPORARY_MARK)[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not _writer_alive(int(pid))):
            _remove(path)
            removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_output_modes(path: Path) -> None:
    """Give `path` (and, for a folder, everything in it) the modes a new file or folder gets under the umask."""
    mask = _umask()
    targets = [path, *path.rglob("*")] if path.is_dir() else [path]
    for target in targets:
        if not target.is_symlink():
            os.chmod(target, (0o777 if target.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_output(output: Path, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write `output` at (a created, empty folder when `folder`); on success it
    becomes `output` (a file replaces one that exists; a folder must not exist), on any error it is removed."""
    output = Path(output)
    remove_stale_temporaries(output.parent)
    tmp = temporary_beside(output)
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        apply_output_modes(tmp)
        if folder:
            tmp.rename(output)
        else:
            os.replace(tmp, output)
    except BaseException:
        _remove(tmp)
        raise
