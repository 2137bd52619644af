"""Real English text shipped with edgec (see README.md here for provenance).

Pride and Prejudice is the evaluation text, Sense and Sensibility the
calibration text: different novels, so the two are disjoint by construction.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from edgec.core.errors import EdgecError

EVALUATION_NAME = "Pride and Prejudice"
CALIBRATION_NAME = "Sense and Sensibility"


def _packaged(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def evaluation_text() -> str:
    """The evaluation text: Jane Austen's Pride and Prejudice."""
    return _packaged("pride_and_prejudice.txt")


def calibration_text() -> str:
    """The calibration text: Jane Austen's Sense and Sensibility."""
    return _packaged("sense_and_sensibility.txt")


def read_user_text(path: str | Path) -> str:
    """A user's own text file (UTF-8), refused clearly if missing, unreadable or empty."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EdgecError(f"text file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecError(f"{p}: cannot read as UTF-8 text ({type(exc).__name__})") from None
    if not text.strip():
        raise EdgecError(f"{p}: the text file is empty")
    return text
