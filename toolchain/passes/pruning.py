"""Pruning passes: magnitude, Wanda and SparseGPT, unstructured or 2:4, with optional
quantization of the survivors ('2:4+int4:g128').

Unstructured sparsity is stored in a dense float format (fp16/bf16) with zeros;
2:4 sparsity uses the 2:4 formats. Magnitude and Wanda quantize survivors by RTN;
SparseGPT prunes and quantizes jointly with OBS error feedback.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from edgec.calibration.sequential import BlockCalibration
from edgec.passes.base import Compressed, LayerConfig, Pass, encode_with_keep, is_dense_float, is_quantized, sparse_inner
from edgec.passes.obs_math import PruneSpec, obs_sweep
from edgec.passes.pruning_math import keep_nm, keep_top, magnitude_score, wanda_score


class _Pruning(Pass):
    def check(self, layer: str, config: LayerConfig) -> None:
        inner = sparse_inner(config.format)
        if inner is not None:
            if config.sparsity:
                raise self.refuse(layer, config, "2:4 fixes the sparsity at 50 %; drop --sparsity")
            if not (is_dense_float(inner) or is_quantized(inner)):
                raise self.refuse(layer, config, f"unsupported inner format {inner}")
            return
        if not is_dense_float(config.format):
            raise self.refuse(layer, config, "unstructured sparsity is stored in fp16 or bf16; use 2:4 to combine with quantization")
        if not 0 < config.sparsity < 1:
            raise self.refuse(layer, config, "give --sparsity between 0 and 1, or a 2:4 format")



class _ScorePruning(_Pruning):
    """Pruning by a per-weight score, then round-to-nearest of the survivors."""

    @abstractmethod
    def keep_mask(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None, layer: str) -> np.ndarray:
        """Kept mask (N, K) of the weight."""

    def compress(self, weight: np.ndarray, config: LayerConfig, cal: BlockCalibration | None,
                 layer: str) -> Compressed:
        keep = self.keep_mask(weight, config, cal, layer)
        enc = encode_with_keep(config.format, weight, keep)
        return Compressed(config.format.decode(enc, weight.shape), enc)


class Magnitude(_ScorePruning):
    """Drop the smallest |W|: over the whole layer (unstructured) or per group of four (2:4)."""

    name = "magnitude"
    calibrated = False

    def keep_mask(self, weight, config, cal, layer):
        score = magnitude_score(weight)
        return keep_nm(score, 2, 4) if config.format.is_sparse else keep_top(score, config.sparsity, per_row=False)


class Wanda(_ScorePruning):
    """Drop the smallest |W_ij|·‖X_j‖ per output row (or per group of four for 2:4)."""

    name = "wanda"

    def keep_mask(self, weight, config, cal, layer):
        score = wanda_score(weight, cal.stats[layer].norm.numpy())
        return keep_nm(score, 2, 4) if config.format.is_sparse else keep_top(score, config.sparsity, per_row=True)


@dataclass(frozen=True)
class SparseGPTOptions:
    """block_size: columns per mask-selection and lazy-update block; damp: Hessian damping fraction."""

    block_size: int = 128
    damp: float = 0.01


class SparseGPT(_Pruning):
    """OBS pruning with weight reconstruction (Frantar & Alistarh, 2023); quantizes survivors jointly."""

    name = "sparsegpt"

    def __init__(self, options: SparseGPTOptions | None = None) -> None:
        self.options = options or SparseGPTOptions()

    def compress(self, weight, config, cal, layer):
        inner = sparse_inner(config.format)
        prune = PruneSpec(n=2, m=4) if inner is not None else PruneSpec(sparsity=config.sparsity)
        quantizer = inner if inner is not None and is_quantized(inner) else None
        result = obs_sweep(weight, cal.stats[layer].hessian.numpy(), quantizer=quantizer, prune=prune,
                           block_size=self.options.block_size, damp=self.options.damp)
        if quantizer is None:
            enc = encode_with_keep(config.format, result.weight, result.keep)
            return Compressed(config.format.decode(enc, weight.shape), enc)
        n, k = weight.shape
        idx = np.nonzero(result.keep.reshape(n, k // 4, 4))[2].reshape(n, k // 4, 2).astype(np.uint8)
        kept_codes = result.codes[result.keep].reshape(n, k // 2)
        enc = {"indices": idx, "values.codes": kept_codes,
               **{f"values.{p}": v.astype(quantizer.param_dtypes[p]) for p, v in result.params.items()}}
        return Compressed(result.weight, enc)
