"""Checks of values that arrive from callers and files: a number is an int or float, never a bool."""

from __future__ import annotations

import numpy as np


def is_integer(value: object) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float (Python or numpy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
