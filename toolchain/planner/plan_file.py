"""Reading a plan file back: validation, and the per-layer request `compress` takes."""

from __future__ import annotations

import json
from pathlib import Path

from edgec.assignment import quantizable
from edgec.core.errors import EdgecError, FormatError
from edgec.models.loading import LoadedModel
from edgec.passes import PASSES, LayerConfig
from edgec.planner.plan import PLAN_VERSION
from edgec.core.formats import parse_format


_SECTIONS = {"model": dict, "device": dict, "constraints": dict, "settings": dict, "totals": dict, "layers": dict,
             "units": list}


def read_plan(path: Path) -> dict:
    """A plan file's content, checked before any model is loaded; raises naming the file and the field.

    Every section `edgec plan` writes must be there with its type, and every layer must carry a
    shape of two positive integers, a format edgec knows and a method it has. What can only be
    checked against the model (its weights, layer names and shapes) is `plan_request`'s.
    """
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
    for key, kind in _SECTIONS.items():
        if not isinstance(plan.get(key), kind):
            raise EdgecError(f"{path}: field {key!r} is missing or not a {'mapping' if kind is dict else 'list'}")
    if not isinstance(plan["model"].get("weights_sha256"), str):
        raise EdgecError(f"{path}: field 'model.weights_sha256' is missing or not a string")
    if not plan["layers"]:
        raise EdgecError(f"{path}: field 'layers' is empty: the plan compresses nothing")
    for name, entry in plan["layers"].items():
        _check_layer(path, name, entry)
    return plan


def _check_layer(path: Path, name: str, entry: object) -> None:
    if not isinstance(entry, dict):
        raise EdgecError(f"{path}: layer {name!r} is not a mapping")
    shape = entry.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
        raise EdgecError(f"{path}: layer {name!r}: 'shape' must be two positive integers, got {shape!r}")
    if not isinstance(entry.get("format"), str) or not isinstance(entry.get("method"), str):
        raise EdgecError(f"{path}: layer {name!r} needs a 'format' and a 'method'")
    try:
        parse_format(entry["format"]).check_shape(tuple(shape))
    except FormatError as exc:
        raise EdgecError(f"{path}: layer {name!r}: {exc}") from None
    if entry["method"] not in PASSES:
        raise EdgecError(f"{path}: layer {name!r}: unknown method {entry['method']!r} (known: {', '.join(PASSES)})")


def plan_request(plan: dict, loaded: LoadedModel, path: Path) -> dict[str, LayerConfig]:
    """The plan's layers as a `compress` request, for the model it was made for (checked layer by layer)."""
    want = plan["model"]["weights_sha256"]
    if want != loaded.weights_hash:
        raise EdgecError(f"{path} was made for {plan['model'].get('name', 'another model')} "
                         f"(weights sha256 {str(want)[:12]}...), not {loaded.name} ({loaded.weights_hash[:12]}...)")
    head = loaded.adapter.head(loaded.model)
    linears = quantizable(loaded.model, loaded.adapter, include_head=head is not None)
    request = {}
    for name, entry in plan["layers"].items():
        ref = linears.get(name)
        if ref is None:
            raise EdgecError(f"{path}: layer {name!r} is not a quantizable linear of {loaded.name}")
        if tuple(entry["shape"]) != tuple(ref.shape):
            raise EdgecError(f"{path}: layer {name!r}: shape {entry['shape']} but {loaded.name}'s is {list(ref.shape)}")
        request[name] = LayerConfig(parse_format(entry["format"]), entry["method"])
    missing = [n for n in linears if n not in request and (head is None or n != head.name)]
    if missing:
        raise EdgecError(f"{path}: the plan leaves out {len(missing)} of {loaded.name}'s layers, "
                         f"first {missing[0]!r} (plans name every block linear; only the head may be left out)")
    return request
