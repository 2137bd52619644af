"""Reading a plan file back: validation, and the per-layer request `compress` takes."""

from __future__ import annotations

import json
from pathlib import Path

from edgec.errors import EdgecError, FormatError
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig
from edgec.planner.plan import PLAN_VERSION
from edgec.runtime.formats import parse_format


def read_plan(path: Path) -> dict:
    """A plan file's content; raises naming the file and what is wrong with it."""
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgecError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EdgecError(f"{path}: not a plan file ({str(exc).splitlines()[0]})") from None
    if not isinstance(plan, dict) or "edgec_plan" not in plan:
        raise EdgecError(f"{path}: not a plan file (no 'edgec_plan' version key)")
    if plan["edgec_plan"] != PLAN_VERSION:
        raise EdgecError(f"{path}: plan version {plan['edgec_plan']!r} is not supported (this edgec reads {PLAN_VERSION})")
    for key in ("model", "layers"):
        if not isinstance(plan.get(key), dict):
            raise EdgecError(f"{path}: field {key!r} is missing or not a mapping")
    return plan


def plan_request(plan: dict, loaded: LoadedModel, path: Path) -> dict[str, LayerConfig]:
    """The plan's layers as a `compress` request, for the model it was made for."""
    want = plan["model"].get("weights_sha256")
    if want != loaded.weights_hash:
        raise EdgecError(f"{path} was made for {plan['model'].get('name', 'another model')} "
                         f"(weights sha256 {str(want)[:12]}...), not {loaded.name} ({loaded.weights_hash[:12]}...)")
    request = {}
    for name, entry in plan["layers"].items():
        try:
            fmt, method = parse_format(entry["format"]), entry["method"]
        except (KeyError, TypeError):
            raise EdgecError(f"{path}: layer {name!r} needs a 'format' and a 'method'") from None
        except FormatError as exc:
            raise EdgecError(f"{path}: layer {name!r}: {exc}") from None
        if method not in PASSES:
            raise EdgecError(f"{path}: layer {name!r}: unknown method {method!r} (known: {', '.join(PASSES)})")
        request[name] = LayerConfig(fmt, method)
    return request
