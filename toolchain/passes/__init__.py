"""Compression passes, registered by explicit import: name -> pass class."""

from edgec.passes.awq import AWQ, AWQOptions
from edgec.passes.base import LayerConfig, LayerResult, Pass
from edgec.passes.gptq import GPTQ, GPTQOptions
from edgec.passes.pruning import Magnitude, SparseGPT, SparseGPTOptions, Wanda
from edgec.passes.rtn import RTN
from edgec.passes.smoothquant import SmoothQuant, SmoothQuantOptions

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (RTN, GPTQ, AWQ, SmoothQuant, Magnitude, Wanda, SparseGPT)}

__all__ = ["PASSES", "AWQ", "AWQOptions", "LayerConfig", "LayerResult", "Pass", "GPTQ", "GPTQOptions", "Magnitude", "RTN", "SparseGPT",
           "SmoothQuant", "SmoothQuantOptions", "SparseGPTOptions", "Wanda"]
