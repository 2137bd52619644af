"""Writing export files atomically: staged in a temporary folder beside the target, renamed on success.

An ONNX export is one file, or a model file and its external-data file when the
weights pass protobuf's 2 GB limit, plus the tokenizer and generation files beside it
(`edgec.exporters.tokenizer_files`). All are written under their final names inside
a hidden temporary folder in the target's folder, then moved into place, the model
last, so the model never points at data that is missing and never appears without
its tokenizer, and a failure or interruption leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgec.core.errors import EdgecError
from edgec.core.output_files import apply_output_modes, remove_stale_temporaries, temporary_beside
from edgec.exporters.tokenizer_files import check_beside


@dataclass(frozen=True)
class Stage:
    """Where a model is written before it is moved to `out`."""

    model: Path  # <temporary folder>/<out's name>
    data: str | None  # external-data file name, beside the model, or None for one file
    beside: tuple[str, ...] = ()  # other files written beside the model (tokenizer, generation settings)

    def model_files(self) -> list[Path]:
        """The model and its external data, if any."""
        return [self.model.with_name(self.data), self.model] if self.data else [self.model]

    def files(self) -> list[Path]:
        """Every file of the export, in the order they are moved into place: the model last."""
        return [self.model.with_name(name) for name in self.beside] + self.model_files()


@contextmanager
def staged(out: Path, external_data: bool = False, beside: dict[str, bytes] | None = None) -> Iterator[Stage]:
    """Yield a Stage for `out` with the files `beside` already written to it (those not already in `out`'s
    folder with the same contents); move its files into place if the block succeeds, remove them either way."""
    out = Path(out)
    if not out.parent.is_dir():
        raise EdgecError(f"output folder {out.parent} does not exist")
    beside = beside or {}
    to_write = check_beside(out.parent, beside)
    remove_stale_temporaries(out.parent)
    folder = temporary_beside(out)
    folder.mkdir()
    stage = Stage(folder / out.name, out.name + ".data" if external_data else None, tuple(to_write))
    try:
        for name in to_write:
            (folder / name).write_bytes(beside[name])
        yield stage
        for path in stage.files():
            apply_output_modes(path)  # what open(out, "w") would give
            os.replace(path, out.with_name(path.name))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def save(model: onnx.ModelProto, stage: Stage) -> None:
    """Write the model (and its external data) to the stage."""
    if stage.data is None:
        stage.model.write_bytes(model.SerializeToString())
    else:
        onnx.save_model(model, str(stage.model), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=stage.data, size_threshold=1024)


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace a written model's metadata_props in place, leaving its weights (and external data) as they are."""
    model = onnx.load(str(path), load_external_data=False)
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
