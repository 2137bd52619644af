"""Reading a plan file back: validation, and the per-layer request `compress` takes."""

from __future__ import annotations

import json
from pathlib import Path

from edgec.assignment import quantizable
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.models.loading import LoadedModel
from edgec.passes import LayerConfig
from edgec.planner.plan_schema import Plan, validate_plan


def read_plan(path: Path) -> Plan:
    """A plan file's content, checked against the schema before any model is loaded; raises naming the
    file and the field.

    Every section `edgec plan` writes must be there with its type, and every layer must carry a
    shape of two positive integers, a format edgec knows and a method it has (`edgec.planner.plan_schema`).
    What can only be checked against the model (its weights, layer names and shapes) is `plan_request`'s.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EdgecError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise EdgecError(f"{path}: not a plan file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise EdgecError(f"{path}: not a plan file (a plan is a JSON object)")
    return validate_plan(data, str(path))


def plan_request(plan: Plan, loaded: LoadedModel, path: Path) -> dict[str, LayerConfig]:
    """The plan's layers as a `compress` request, for the model it was made for (checked layer by layer)."""
    want = plan.model.weights_sha256
    if want != loaded.weights_hash:
        raise EdgecError(f"{path} was made for {plan.model.name} "
                         f"(weights sha256 {want[:12]}...), not {loaded.name} ({loaded.weights_hash[:12]}...)")
    head = loaded.adapter.head(loaded.model)
    linears = quantizable(loaded.model, loaded.adapter, include_head=head is not None)
    request = {}
    for name, entry in plan.layers.items():
        ref = linears.get(name)
        if ref is None:
            raise EdgecError(f"{path}: layer {name!r} is not a quantizable linear of {loaded.name}")
        if tuple(entry.shape) != tuple(ref.shape):
            raise EdgecError(f"{path}: layer {name!r}: shape {entry.shape} but {loaded.name}'s is {list(ref.shape)}")
        request[name] = LayerConfig(parse_format(entry.format), entry.method)
    missing = [n for n in linears if n not in request and (head is None or n != head.name)]
    if missing:
        raise EdgecError(f"{path}: the plan leaves out {len(missing)} of {loaded.name}'s layers, "
                         f"first {missing[0]!r} (plans name every block linear; only the head may be left out)")
    return request
