"""Byte sizes written the way people write them: `300MB`, `1.5 GiB`, `80e6`."""

from __future__ import annotations

import math
import re

from edgec.core.errors import EdgecError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int | float, what: str = "size") -> int:
    """Bytes from an int or a string such as '300MB' (10^6) or '2GiB' (2^30); raises naming `what`."""
    if isinstance(text, bool):
        raise EdgecError(f"{what}: expected a size such as 300MB, got {text!r}")
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = _SIZE.match(text)
        if not match:
            raise EdgecError(f"{what}: expected a size such as 300MB or 2GiB, got {text!r}")
        value, unit = float(match.group(1)), (match.group(2) or "").lower()
    if not math.isfinite(value * _UNITS[unit]):
        raise EdgecError(f"{what}: expected a finite size such as 300MB, got {text!r}")
    if value <= 0:
        raise EdgecError(f"{what}: must be positive, got {text!r}")
    return int(round(value * _UNITS[unit]))


def format_size(n: float) -> str:
    """'61.2 MB' style (decimal units, as device data sheets and `--memory` use)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"
