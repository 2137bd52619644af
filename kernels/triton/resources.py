"""What each Triton kernel variant needs on a GPU architecture, from an ahead-of-time compile.

Triton compiles a kernel to a cubin for a named architecture without a GPU (its wheel ships
`ptxas`), so the kernels are checked to compile for each GPU the device profiles name, and
`cuobjdump --dump-resource-usage` reads what a block of the cubin needs: registers per
thread, stack (local memory; above 0 means registers spilled), and shared memory (Triton's
pipelining buffers plus the cubin's own). A variant whose shared memory exceeds the
architecture's per-block limit cannot launch there: the autotuner skips it, so every
(kernel, storage kind) must keep at least one variant that fits.

    from edgec.kernels.triton import resources
    for variant in resources.matmul_variants():
        print(variant.label, resources.compile_variant(variant, 90))
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

ARCHS = {80: "A100 (sm_80)", 86: "RTX 30 (sm_86)", 87: "Jetson Orin (sm_87)", 89: "RTX 40 (sm_89)",
         90: "H100 (sm_90)"}
"""Compute capabilities of the GPUs the shipped device profiles name."""

MAX_SHARED = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}
"""Shared memory one block may use (opt-in maximum), bytes: CUDA C Programming Guide, table
"Technical Specifications per Compute Capability" (163 KB for 8.0 and 8.7, 99 KB for 8.6 and
8.9, 227 KB for 9.0)."""

_MATMUL_ARGS = ("x_ptr", "y_ptr", "q_ptr", "scale_ptr", "min_ptr", "lut_ptr", "meta_ptr")
_MATMUL_TYPES = ("*fp32", "*fp32", "*u8", "*fp32", "*fp32", "*fp32", "*u8")
_GEMV_INTS = ("N", "K", "stride_xm", "stride_ym", "q_stride", "ng", "group", "meta_stride")
_GEMM_INTS = ("M",) + _GEMV_INTS
_WORDS_INTS = ("N", "K", "stride_xm", "stride_ym", "q_stride", "ng")
_GEMV_WORDS_ARGS = {"x_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i32", "scale_ptr": "*fp32", "exponent_ptr": "*fp32",
                    "lut_ptr": "*fp32", **{name: "i32" for name in _WORDS_INTS}}
_GEMM_WORDS_ARGS = {"x_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i32", "scale_ptr": "*fp32", "min_ptr": "*fp32",
                    "exponent_ptr": "*fp32", "lut_ptr": "*fp32", **{name: "i32" for name in ("M",) + _WORDS_INTS}}
_GEMV_SPARSE_ARGS = {"planes_ptr": "*i32", "factors_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i32", "meta_ptr": "*i16",
                     "scale_ptr": "*fp32", "min_ptr": "*fp32",
                     **{name: "i32" for name in ("N", "K", "stride_ym", "q_stride", "ng")}}
_GEMV_SPARSE_FLOAT_ARGS = {"pairs_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i32", "meta_ptr": "*u8",
                           "scale_ptr": "*fp32", "lut_ptr": "*fp32",
                           **{name: "i32" for name in ("N", "K", "stride_ym", "q_stride", "meta_stride", "ng")}}
_GEMM_SPARSE_ARGS = {"x_ptr": "*fp32", "y_ptr": "*fp32", "q_ptr": "*i32", "meta_ptr": "*u8", "scale_ptr": "*fp32",
                     "min_ptr": "*fp32", "lut_ptr": "*fp32",
                     **{name: "i32" for name in ("M", "N", "K", "stride_xm", "stride_ym", "q_stride", "meta_stride",
                                                 "ng")}}
_GEMV_INTS_ARGS = {"planes_ptr": "*i32", "positions_ptr": "*i32", "factors_ptr": "*fp32", "sums_ptr": "*fp32",
                   "y_ptr": "*fp32", "q_ptr": "*i32", "scale_ptr": "*fp32", "min_ptr": "*fp32",
                   **{name: "i32" for name in ("N", "K", "stride_ym", "q_stride", "ng")}}
_ARCH_CONSTEXPRS = {"NATIVE_FP8": lambda arch, c: c["KIND"] != 2 or arch >= 89}  # as launched (matmul._word_flags)
TYPICAL_GROUP = 128
"""Values per scale group assumed where a variant must pick one: the word-layout GEMV is compiled for the chunks of
K = 4096 with such groups, and the SASS figures count the scales a tile reads at that size."""


@dataclass(frozen=True)
class Variant:
    """One compilable specialization of a kernel: its argument types, constexprs and launch options."""

    label: str
    fn: object  # the triton.JITFunction
    signature: dict[str, str]
    constexprs: dict[str, object]
    options: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """What one block of a compiled variant needs."""

    registers: int  # per thread
    stack: int      # bytes of local memory per thread; > 0 means spilled registers
    shared: int     # bytes per block

    def fits(self, arch: int) -> bool:
        """Whether a block fits the architecture's shared memory (registers are capped at 255 by ptxas)."""
        return self.shared <= MAX_SHARED[arch]


def _variant(label: str, fn, args: dict[str, str], constexprs: dict[str, object], **options: int) -> Variant:
    return Variant(label, fn, {**args, **{name: "constexpr" for name in constexprs}}, constexprs, options)


def matmul_variants(kinds: list[str] | None = None, sparse: tuple[bool, ...] = (False, True),
                    configs: str = "all") -> Iterator[Variant]:
    """The decode GEMV and prefill GEMM for each storage kind (default: all), dense and 2:4, the word-layout
    decode GEMV (`_gemv_ints` for 4-, 3- and 2-bit integers, `_gemv_words` otherwise) and prefill GEMM for the
    dense kinds they decode, and the 2:4 decode GEMVs (`_gemv_sparse` over int8, int4, int3 and int2,
    `_gemv_sparse_floats` over fp16, bf16, fp8 and nf4) and prefill GEMM (`_gemm_sparse`) for those, with each autotune configuration
    (`configs="all"`) or only the first of each kernel ("first")."""
    from edgec.kernels.triton.gemm_sparse import _gemm_sparse, gemm_sparse_configs, stored_steps
    from edgec.kernels.triton.gemm_words import _gemm_words, gemm_word_configs
    from edgec.kernels.triton.gemv_ints import _gemv_ints, gemv_int_configs
    from edgec.kernels.triton.gemv_sparse import (
        SPARSE_FLOAT_KINDS,
        _gemv_sparse,
        _gemv_sparse_floats,
        gemv_sparse_configs,
        sparse_float_words,
    )
    from edgec.kernels.triton.gemv_words import _gemv_words, gemv_word_configs, rows_for_chunk
    from edgec.kernels.triton.matmul import _gemm, _gemv, gemm_configs, gemv_configs
    from edgec.kernels.triton.weights import GROUPED_KINDS, KINDS, SPARSE_WORD_KINDS, WORD_LAYOUT_KINDS
    from edgec.kernels.triton.word_layout import (
        WORDS_PER_CHUNK,
        chunk_widths,
        chunk_words,
        codes_per_word,
        group_words,
        sparse_chunk_words,
        sparse_code_bits,
    )

    base = dict(zip(_MATMUL_ARGS, _MATMUL_TYPES))
    gemv_args = {**base, **{name: "i32" for name in _GEMV_INTS}}
    gemm_args = {**base, **{name: "i32" for name in _GEMM_INTS}}
    for kind_name in kinds or list(KINDS):
        kind, bits, asym = KINDS[kind_name]
        for sp in sparse:
            flags = dict(KIND=kind, BITS=bits, ASYM=asym, SPARSE=sp)
            name = f"{'2:4+' if sp else ''}{kind_name}"
            for fn, args, tuned in ((_gemv, gemv_args, gemv_configs()), (_gemm, gemm_args, gemm_configs())):
                extra = {"WORDS": 0} if fn is _gemm else {}
                for config in tuned[:1] if configs == "first" else tuned:
                    blocks = "x".join(str(v) for v in config.kwargs.values())
                    yield _variant(f"{fn.fn.__name__} {name} {blocks} w{config.num_warps}", fn.fn, args,
                                   {**flags, **extra, **config.kwargs}, num_warps=config.num_warps,
                                   num_stages=config.num_stages)
            sparse_gemv = None  # the 2:4 decode GEMVs: the 2:4 word layout's for integers, float values as stored
            if sp and (kind, bits) in SPARSE_WORD_KINDS:
                code_bits = sparse_code_bits(bits)
                words = sparse_chunk_words(4096, TYPICAL_GROUP if kind in GROUPED_KINDS else None, code_bits)
                meta_type = {8: "*u8", 4: "*i16", 2: "*i32"}[code_bits]
                storage = {"BITS": code_bits, "ASYM": asym, "WORDS": words, "GROUP_STEPS": 1}
                sparse_gemv = ("_gemv_sparse", _gemv_sparse.fn, {**_GEMV_SPARSE_ARGS, "meta_ptr": meta_type},
                               gemv_sparse_configs(), {**storage, "DP4A": True})
                sparse_gemm = ({**_GEMM_SPARSE_ARGS, "meta_ptr": meta_type},
                               {**storage, "KIND": kind, "STEPS": 1, "NATIVE_FP8": True})
            elif sp and kind in SPARSE_FLOAT_KINDS:
                words = sparse_float_words(4096, bits, TYPICAL_GROUP if kind in GROUPED_KINDS else None)
                storage = {"KIND": kind, "BITS": bits, "GROUP_STEPS": 1, "NATIVE_FP8": True}
                sparse_gemv = ("_gemv_sparse_floats", _gemv_sparse_floats.fn,
                               {**_GEMV_SPARSE_FLOAT_ARGS, "meta_ptr": "*i16" if bits == 4 else "*u8"},
                               gemv_sparse_configs(), {**storage, "WORDS": words, "ASM": True})
                sparse_gemm = (_GEMM_SPARSE_ARGS, {**storage, "ASYM": False, "WORDS": 0, "STEPS": stored_steps(4096)})
            if sparse_gemv:
                launches = [(*sparse_gemv, ""), ("_gemm_sparse", _gemm_sparse.fn, sparse_gemm[0],
                                                 gemm_sparse_configs(), sparse_gemm[1], "")]
                if sparse_gemv[0] == "_gemv_sparse":  # and the narrower chunks of SmolLM2's K = 576 (not int2's)
                    narrow = sparse_chunk_words(576, TYPICAL_GROUP if kind in GROUPED_KINDS else None, code_bits)
                    if narrow:
                        launches.append((*sparse_gemv[:4], {**sparse_gemv[4], "WORDS": narrow},
                                         f" ({narrow}-word chunks)"))
                for label, fn, args, tuned, fixed, chunk in launches:
                    for config in tuned[:1] if configs == "first" else tuned:
                        blocks = "x".join(str(v) for v in config.kwargs.values())
                        yield _variant(f"{label} {name} {blocks} w{config.num_warps}{chunk}", fn, args,
                                       {**fixed, **config.kwargs}, num_warps=config.num_warps,
                                       num_stages=config.num_stages)
            if (kind, bits) in WORD_LAYOUT_KINDS and not sp:
                storage = {"KIND": kind, "BITS": bits, "GROUP_STEPS": 1, "NATIVE_FP8": True}
                # the GEMM joins 2 or 4 values per tile in narrower chunks (SmolLM2's K = 576 makes 8-word int4 chunks;
                # 3-bit codes also take the 4-word chunks that start only 8-byte aligned)
                gemm_chunks = [words for words in WORDS_PER_CHUNK if codes_per_word(bits) * words >= 16]
                gemv_chunk = chunk_words(4096, TYPICAL_GROUP if bits <= 4 else None, bits)
                if kind == 4:  # 4-, 3- and 2-bit integers decode in integer dot products
                    ints = {"BITS": bits, "ASYM": asym, "GROUP_STEPS": 1, "DP4A": True}
                    launches = [(_gemv_ints.fn, _GEMV_INTS_ARGS, gemv_int_configs(), words, {**ints, "GROUP_WORDS": words})
                                for words in (gemv_chunk,) + tuple(w for w in WORDS_PER_CHUNK if w not in chunk_widths(bits))]
                else:
                    launches = [(_gemv_words.fn, _GEMV_WORDS_ARGS, rows_for_chunk(gemv_word_configs(), gemv_chunk),
                                 gemv_chunk, {**storage, "ASM": True})]
                launches += [(_gemm_words.fn, _GEMM_WORDS_ARGS, gemm_word_configs(), words,
                              {**storage, "ASYM": asym, "GROUP_WORDS": words}) for words in gemm_chunks]
                if kind == 5:  # nf4 in groups of 64 (the GPU profiles') and 32: chunks no wider than the group
                    launches += [(_gemv_words.fn, _GEMV_WORDS_ARGS,
                                  rows_for_chunk(gemv_word_configs(), chunk_words(4096, group, bits)),
                                  chunk_words(4096, group, bits), {**storage, "ASM": True, "GROUP": group})
                                 for group in (64, 32)]
                if kind == 4 and bits < 4:  # groups of 32 (a run of 2 words each) in 16-word chunks
                    small = chunk_words(4096, 32, bits)
                    span = group_words(32, bits, small)
                    launches += [(_gemv_ints.fn, _GEMV_INTS_ARGS, gemv_int_configs(), small, {**ints, "GROUP_WORDS": span}),
                                 (_gemm_words.fn, _GEMM_WORDS_ARGS, gemm_word_configs(), small,
                                  {**storage, "ASYM": asym, "GROUP_WORDS": span})]
                for fn, args, tuned, words, flags in launches:
                    chunk = "" if words == gemv_chunk else f" ({words}-word chunks)"
                    span = flags.get("GROUP_WORDS", words)
                    grouping = "" if span == words else f":g{span * codes_per_word(bits)}"
                    grouping = f":g{flags.pop('GROUP')}" if "GROUP" in flags else grouping
                    label = fn.__name__.removesuffix("_kernel")
                    for config in tuned[:1] if configs == "first" else tuned:
                        blocks = "x".join(str(v) for v in config.kwargs.values())
                        yield _variant(f"{label} {name}{grouping} {blocks} w{config.num_warps}{chunk}", fn, args,
                                       {**flags, "WORDS": words, **config.kwargs}, num_warps=config.num_warps,
                                       num_stages=config.num_stages)


def ops_variants(head_dims: tuple[int, ...] = (64, 128), hidden: tuple[int, ...] = (576, 4096)) -> Iterator[Variant]:
    """RMSNorm over each hidden size, SwiGLU, rotary and both attention kernels for each head size,
    with the block sizes `edgec.kernels.triton.ops` launches them with."""
    import triton
    from edgec.kernels.triton import ops

    for n in hidden:
        yield _variant(f"_rms_norm {n}", ops._rms_norm,
                       {"x_ptr": "*fp32", "w_ptr": "*fp32", "y_ptr": "*fp32", "n": "i32", "eps": "fp32"},
                       {"BLOCK": triton.next_power_of_2(n)})
    yield _variant("_silu_mul", ops._silu_mul, {"g_ptr": "*fp32", "u_ptr": "*fp32", "total": "i32"}, {"BLOCK": 1024})
    for hd in head_dims:
        yield _variant(f"_rope hd{hd}", ops._rope,
                       {"x_ptr": "*fp32", "cos_ptr": "*fp32", "sin_ptr": "*fp32", "start_ptr": "*i64", "heads": "i32",
                        "half": "i32"}, {"BLOCK": triton.next_power_of_2(hd // 2)})
        attention = {"q_ptr": "*fp32", "k_ptr": "*fp32", "v_ptr": "*fp32", "o_ptr": "*fp32"}
        sizes = {"start_ptr": "*i64", "heads": "i32", "kv_heads": "i32", "head_dim": "i32", "window": "i32",
                 "scale": "fp32"}
        yield _variant(f"_attention hd{hd}", ops._attention, {**attention, **sizes},
                       {"BLOCK_S": 32, "BLOCK_D": triton.next_power_of_2(hd)})
        partials = {"acc_ptr": "*fp32", "stats_ptr": "*fp32"}
        yield _variant(f"_attention_split hd{hd}", ops._attention_split,
                       {"q_ptr": "*fp32", "k_ptr": "*fp32", "v_ptr": "*fp32", **partials, **sizes, "splits": "i32"},
                       {"SPAN": ops.DECODE_SPAN, "BLOCK_S": 32, "BLOCK_D": triton.next_power_of_2(hd)})
        yield _variant(f"_attention_combine hd{hd}", ops._attention_combine,
                       {**partials, "o_ptr": "*fp32", "start_ptr": "*i64", "head_dim": "i32", "window": "i32",
                        "splits": "i32"}, {"SPAN": ops.DECODE_SPAN, "BLOCK_D": triton.next_power_of_2(hd)})
        for block, warps in sorted({ops.tiled_blocks(tokens, hd) for tokens in (ops.TILED_FROM, 512)}):
            yield _variant(f"_attention_tiled hd{hd} m{block}", ops._attention_tiled,
                           {**attention, "t_count": "i32", **sizes},
                           {"BLOCK_M": block, "BLOCK_N": 32, "BLOCK_D": max(16, triton.next_power_of_2(hd))},
                           num_warps=warps)


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def compile_cubin(variant: Variant, arch: int):
    """Compile `variant` for compute capability `arch` (no GPU needed): the cubin bytes and Triton's metadata.

    Raises whatever Triton raises when the kernel does not compile for that architecture.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    constexprs = {**variant.constexprs, **{name: rule(arch, variant.constexprs)
                                           for name, rule in _ARCH_CONSTEXPRS.items() if name in variant.constexprs}}
    names = list(variant.fn.arg_names)
    # Triton specializes 16-byte aligned pointers (every torch allocation) at launch; compile as it would
    aligned = {(names.index(name),): [["tt.divisibility", 16]] for name, kind in variant.signature.items()
               if kind.startswith("*")}
    source = ASTSource(fn=variant.fn, signature=variant.signature, constexprs=constexprs, attrs=aligned)
    compiled = triton_compile(source, target=GPUTarget("cuda", arch, 32), options=dict(variant.options))
    return compiled.asm["cubin"], compiled.metadata


def cuobjdump(cubin: bytes, *flags: str) -> str:
    """What the CUDA toolkit's `cuobjdump` (shipped in Triton's wheel) prints for `cubin` with `flags`."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([_tool("cuobjdump"), *flags, file.name], capture_output=True, text=True,
                              check=True).stdout


def compile_variant(variant: Variant, arch: int) -> Resources:
    """Compile `variant` for compute capability `arch` (no GPU needed) and read its resource usage.

    Raises whatever Triton raises when the kernel does not compile for that architecture.
    """
    cubin, metadata = compile_cubin(variant, arch)
    usage = cuobjdump(cubin, "--dump-resource-usage")
    found = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", usage)
    if found is None:
        raise RuntimeError(f"{variant.label}: cuobjdump printed no resource usage:\n{usage}")
    registers, stack, static_shared = (int(v) for v in found.groups())
    return Resources(registers, stack, int(metadata.shared) + static_shared)
