"""The memory `edgec compress --plan` will need on this machine, estimated before it runs.

The estimate is the resident size of a process that has just loaded the model (measured
by the planner in its own process, which loads it the same way), plus twice the float
bytes of the planned weights (a loaded checkpoint is memory-mapped, so compression first
reads every weight's pages in, then rewrites them, which makes private copies), plus what
the sequential calibration adds on top when the plan uses a calibrated method: the
calibration windows' hidden states (block inputs and outputs, float32), one block's
input statistics (XᵀX kept in float32 and its float64 copy) and the largest unit's
working copies in GPTQ/SparseGPT (about four float32 copies of its weights).
On SmolLM2 it came out 13 % to 22 % above the peak measured by `benchmarks/planner.py`
(which prints both) for seven plans, and 7 % below it for an all-bf16 plan.
"""

from __future__ import annotations

from edgec.models.loading import LoadedModel
from edgec.passes import PASSES
from edgec.planner.plan_schema import Plan

CALIBRATION_WINDOWS = 32  # `edgec compress` defaults
CALIBRATION_SEQ_LEN = 512
WORKSPACE_COPIES = 4


def compress_peak_bytes(loaded: LoadedModel, plan: Plan, loaded_rss: int, samples: int = CALIBRATION_WINDOWS,
                        seq_len: int = CALIBRATION_SEQ_LEN) -> int:
    """Estimated peak resident bytes of `edgec compress --plan` for `plan` (see the module docstring)."""
    params = {name: p for name, p in loaded.model.named_parameters(remove_duplicate=False)}
    rewritten = sum(params[f"{name}.weight"].numel() * params[f"{name}.weight"].element_size()
                    for u in plan.units for name in u.layers if f"{name}.weight" in params)
    loaded_rss += 2 * rewritten
    calibrated = [u for u in plan.units if PASSES[u.method].calibrated]
    if not calibrated:
        return loaded_rss
    config = loaded.model.config
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    activations = 2 * samples * seq_len * hidden * 4
    refs = {ref.name: ref for ref in loaded.adapter.linears(loaded.model)}
    per_block: dict[int, int] = {}
    for unit in plan.units:  # a unit's linears read one input: one XᵀX per unit
        ref = refs.get(unit.layers[0])
        if ref is not None:
            per_block[ref.block] = per_block.get(ref.block, 0) + 12 * ref.shape[1] ** 2
    statistics = max(per_block.values(), default=0)
    workspace = max(WORKSPACE_COPIES * 4 * sum(n * k for n, k in (refs[name].shape for name in u.layers))
                    for u in calibrated)
    return loaded_rss + activations + statistics + workspace
