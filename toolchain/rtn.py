"""Round-to-nearest compression of a torch model through the runtime's numpy codecs.

The model keeps float weights, replaced by exactly the values the stored format
dequantizes to (``Format.fake_quantize``), so evaluation in torch measures what
a runtime reading the packed weights computes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from edgec.assignment import validate_assignment
from edgec.models.adapters import Adapter
from edgec.runtime.formats import Format


def apply_rtn(model: nn.Module, adapter: Adapter, assignment: Mapping[str, Format], progress: bool = True) -> None:
    """Replace each assigned linear's weight by its round-to-nearest quantized value, in place."""
    refs = validate_assignment(model, adapter, assignment)  # refuse before touching any weight
    for name, ref in tqdm(refs.items(), desc="quantizing", unit="layer", disable=not progress):
        w = ref.weight().float().cpu().numpy()
        ref.set_weight(torch.from_numpy(assignment[name].fake_quantize(w)))
