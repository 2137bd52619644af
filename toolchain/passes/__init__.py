"""Compression passes, registered by explicit import: name -> pass class."""

from edgec.passes.base import LayerConfig, LayerResult, Pass
from edgec.passes.gptq import GPTQ, GPTQOptions
from edgec.passes.pruning import Magnitude, SparseGPT, SparseGPTOptions, Wanda
from edgec.passes.rtn import RTN

PASSES: dict[str, type[Pass]] = {cls.name: cls for cls in (RTN, GPTQ, Magnitude, Wanda, SparseGPT)}

__all__ = ["PASSES", "LayerConfig", "LayerResult", "Pass", "GPTQ", "GPTQOptions", "Magnitude", "RTN", "SparseGPT",
           "SparseGPTOptions", "Wanda"]
