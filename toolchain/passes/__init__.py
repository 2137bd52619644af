"""Compression passes, registered by explicit import: name -> pass class."""

from edgec.passes.awq import AWQ, AWQOptions
from edgec.passes.base import LayerConfig, LayerResult, Pass
from edgec.passes.gptq import GPTQ, GPTQOptions
from edgec.passes.pruning import Magnitude, SparseGPT, SparseGPTOptions, Wanda
from edgec.passes.rtn import RTN
from edgec.passes.smoothquant import SmoothQuant, SmoothQuantOptions

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (RTN, GPTQ, AWQ, SmoothQuant, Magnitude, Wanda, SparseGPT)}


def configured_passes(*, damp: float, act_order: bool, clip: bool, alpha: float) -> dict[str, Pass]:
    """One instance of every pass, with the settings `edgec compress` takes applied where a pass has them:
    `damp` (GPTQ, SparseGPT), `act_order` (GPTQ), `clip` (GPTQ, AWQ), `alpha` (SmoothQuant)."""
    configured: dict[str, Pass] = {
        "gptq": GPTQ(GPTQOptions(damp=damp, act_order=act_order, clip=clip)),
        "sparsegpt": SparseGPT(SparseGPTOptions(damp=damp)),
        "awq": AWQ(AWQOptions(clip=clip)),
        "smoothquant": SmoothQuant(SmoothQuantOptions(alpha=alpha)),
    }
    return {name: configured.get(name) or cls() for name, cls in PASSES.items()}

__all__ = ["PASSES", "configured_passes", "AWQ", "AWQOptions", "LayerConfig", "LayerResult", "Pass", "GPTQ", "GPTQOptions",
           "Magnitude", "RTN", "SparseGPT", "SmoothQuant", "SmoothQuantOptions", "SparseGPTOptions", "Wanda"]
