"""Lower one linear layer to ONNX Runtime nodes and initializers.

A layer is `y = op(quant(x / input_scale)) + bias`, the input path of
`edgec.core.layer_input`, where each part is optional: `input_scale` an AWQ or
SmoothQuant scale that could not be folded, `quant` the static activation quantization
of W8A8 layers (Clip, QuantizeLinear, DequantizeLinear: exactly
`round(x / s).clamp(-127, 127) * s` for int8, and the e4m3fn cast for fp8), and `op` the
weight's encoding (`onnx_encodings`) emitted by one function per encoding type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from edgec.core.errors import EdgecError
from edgec.core.formats.bitpack import pack_bits
from edgec.exporters.onnx_encodings import (
    MATMUL_NBITS_BLOCKS,
    BlockInt,
    BlockNF4,
    ChannelFP8,
    Dense16,
    Dense32,
    Encoding,
)

MS_DOMAIN = "com.microsoft"
F8_MAX = 448.0


@dataclass
class LinearSpec:
    """What the exporter knows about one linear layer of the model."""

    name: str  # module name, e.g. "model.layers.0.mlp.down_proj"
    format: str  # format string, "fp32" when kept as it is
    encoding: Encoding
    bias: np.ndarray | None = None  # float32 (N,)
    input_scale: np.ndarray | None = None  # float32 (K,): the input is divided by it
    act_scale: float | None = None  # static per-tensor activation scale (W8A8)
    tied_embedding: str | None = None  # initializer of the (V, D) embedding this float head shares


@dataclass
class Lowered:
    """Nodes (in execution order) and initializers replacing one placeholder, and the op that carries the weight."""

    nodes: list[NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    op: str = ""

    def init(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def raw(self, name: str, dtype: int, array: np.ndarray) -> str:
        """An initializer of an ONNX type numpy lacks (bfloat16, float8) from its bit patterns."""
        self.initializers.append(helper.make_tensor(name, dtype, array.shape, np.ascontiguousarray(array).tobytes(), raw=True))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, domain: str = "", **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, domain=domain, **attrs))
        return output


def _block_for_channels(k: int) -> int:
    """A MatMulNBits block size for per-channel scales: the largest allowed, no wider than needed."""
    return next((b for b in MATMUL_NBITS_BLOCKS if b >= k), MATMUL_NBITS_BLOCKS[-1])


def _emit_block_int(enc: BlockInt, spec: LinearSpec, x: str, y: str, out: Lowered, qdq: bool) -> None:
    n, k = enc.codes.shape
    if qdq:  # W8A8: int8 weights through DequantizeLinear so ORT can run an integer matmul
        codes = (enc.codes.astype(np.int16) - 128).astype(np.int8).T  # (K, N)
        w = out.node("DequantizeLinear", [out.init(f"{spec.name}.qweight", codes), out.init(f"{spec.name}.scales", enc.scales[:, 0])],
                     f"{spec.name}.weight_dq", f"/{spec.name}/DequantizeLinear", axis=1)
        out.node("MatMul", [x, w], y, f"/{spec.name}/MatMul")
        out.op = "DequantizeLinear(int8, per channel) + MatMul"
        return
    block, scales = enc.block, enc.scales
    if scales.shape[1] == 1 and block not in MATMUL_NBITS_BLOCKS:  # per channel: the row scale in every block
        block = _block_for_channels(k)
        scales = np.repeat(scales, -(-k // block), axis=1)
    if block not in MATMUL_NBITS_BLOCKS:
        raise EdgecError(f"layer {spec.name!r}: format {spec.format} needs MatMulNBits block_size {block}, "
                         f"which ONNX Runtime does not run (allowed: {', '.join(map(str, MATMUL_NBITS_BLOCKS))})")
    nb = scales.shape[1]
    padded = np.zeros((n, nb * block), dtype=np.uint8)
    padded[:, :k] = enc.codes
    blob = pack_bits(padded.reshape(n * nb, block), enc.bits).reshape(n, nb, block * enc.bits // 8)
    inputs = [x, out.init(f"{spec.name}.qweight", blob), out.init(f"{spec.name}.scales", scales)]
    if enc.zeros is not None:
        inputs.append(out.init(f"{spec.name}.zero_points", enc.zeros))
    out.node("MatMulNBits", inputs, y, f"/{spec.name}/MatMulNBits", domain=MS_DOMAIN,
             K=k, N=n, bits=enc.bits, block_size=block)
    out.op = f"MatMulNBits(bits={enc.bits}, block_size={block}{', float zero points' if enc.zeros is not None else ''})"


def _emit_nf4(enc: BlockNF4, spec: LinearSpec, x: str, y: str, out: Lowered, qdq: bool) -> None:
    n, k = enc.codes.shape
    if k % enc.block:
        raise EdgecError(f"layer {spec.name!r}: format {spec.format} has a partial last group (K={k}), but "
                         f"MatMulBnb4's blocks run over the whole flattened matrix")
    flat = enc.codes.reshape(-1)
    packed = (flat[0::2] << 4) | flat[1::2]  # MatMulBnb4 packs two codes per byte, the first in the high nibble
    out.node("MatMulBnb4", [x, out.init(f"{spec.name}.qweight", packed.astype(np.uint8)),
                            out.init(f"{spec.name}.absmax", enc.absmax.reshape(-1))],
             y, f"/{spec.name}/MatMulBnb4", domain=MS_DOMAIN, K=k, N=n, block_size=enc.block, quant_type=1)
    out.op = f"MatMulBnb4(nf4, block_size={enc.block})"


def _emit_fp8(enc: ChannelFP8, spec: LinearSpec, x: str, y: str, out: Lowered, qdq: bool) -> None:
    w = out.raw(f"{spec.name}.weight_fp8", TensorProto.FLOAT8E4M3FN, enc.codes.T)  # (K, N)
    wf = out.node("DequantizeLinear", [w, out.init(f"{spec.name}.weight_scale", enc.scale)], f"{spec.name}.weight_dq",
                  f"/{spec.name}/DequantizeLinear", axis=1)
    out.node("MatMul", [x, wf], y, f"/{spec.name}/MatMul")
    out.op = "DequantizeLinear(float8e4m3fn, per channel) + MatMul"


def _emit_dense16(enc: Dense16, spec: LinearSpec, x: str, y: str, out: Lowered, qdq: bool) -> None:
    dtype = TensorProto.BFLOAT16 if enc.bf16 else TensorProto.FLOAT16
    w = out.raw(f"{spec.name}.weight", dtype, enc.values.T)  # (K, N)
    wf = out.node("Cast", [w], f"{spec.name}.weight_f32", f"/{spec.name}/Cast", to=TensorProto.FLOAT)
    out.node("MatMul", [x, wf], y, f"/{spec.name}/MatMul")
    out.op = f"Cast({'bfloat16' if enc.bf16 else 'float16'}) + MatMul"


def _emit_dense32(enc: Dense32, spec: LinearSpec, x: str, y: str, out: Lowered, qdq: bool) -> None:
    if spec.tied_embedding is None:
        out.node("MatMul", [x, out.init(f"{spec.name}.weight", enc.weight.T)], y, f"/{spec.name}/MatMul")
        out.op = "MatMul"
        return
    # The head shares the embedding (V, D): Gemm reads it transposed, so it is stored once.
    p = f"/{spec.name}"
    shape = out.node("Shape", [x], f"{spec.name}.in_shape", f"{p}/Shape")
    lead = out.node("Slice", [shape, out.init(f"{spec.name}.zero", np.array([0])), out.init(f"{spec.name}.minus1", np.array([-1]))],
                    f"{spec.name}.lead", f"{p}/Slice")
    rows = out.node("Reshape", [x, out.init(f"{spec.name}.rows", np.array([-1, enc.weight.shape[1]]))],
                    f"{spec.name}.x2d", f"{p}/Reshape")
    y2 = out.node("Gemm", [rows, spec.tied_embedding], f"{spec.name}.y2d", f"{p}/Gemm", transB=1)
    full = out.node("Concat", [lead, out.init(f"{spec.name}.n", np.array([enc.weight.shape[0]]))], f"{spec.name}.out_shape",
                    f"{p}/Concat", axis=0)
    out.node("Reshape", [y2, full], y, f"{p}/Reshape_out")
    out.op = "Gemm(transB=1) on the tied embedding"


EMITTERS: dict[type, Callable[..., None]] = {
    BlockInt: _emit_block_int, BlockNF4: _emit_nf4, ChannelFP8: _emit_fp8, Dense16: _emit_dense16, Dense32: _emit_dense32,
}


def _emit_act_quant(spec: LinearSpec, x: str, out: Lowered) -> str:
    """Quantize-dequantize the input with the layer's static scale, as edgec.core.layer_input does."""
    act = getattr(spec.encoding, "act_format", None)
    if act is None:
        raise EdgecError(f"layer {spec.name!r}: format {spec.format} has an activation scale, "
                         f"but only int8 and fp8 layers quantize activations")
    s, p = np.float32(spec.act_scale), f"/{spec.name}/act"
    scale = out.init(f"{spec.name}.act_scale", np.array(s, dtype=np.float32))
    if act == "fp8":
        # Cast(float8e4m3fn, saturating) is torch's `.clamp(-448, 448).to(float8_e4m3fn)`. Not QuantizeLinear:
        # ONNX Runtime 1.31 would fuse a float8 Q/DQ pair before MatMul into MatMulIntegerToFloat, which has
        # no float8 kernel, and refuse the graph.
        scaled = out.node("Div", [x, scale], f"{spec.name}.act_scaled", f"{p}/Div")
        q = out.node("Cast", [scaled], f"{spec.name}.act_q", f"{p}/Cast_fp8", to=TensorProto.FLOAT8E4M3FN, saturate=1)
        back = out.node("Cast", [q], f"{spec.name}.act_f32", f"{p}/Cast_f32", to=TensorProto.FLOAT)
        return out.node("Mul", [back, scale], f"{spec.name}.act_dq", f"{p}/Mul")
    # int8: clamp to +-127 steps first, since QuantizeLinear alone would also use -128
    x = out.node("Clip", [x, out.init(f"{spec.name}.act_lo", np.array(-127 * s, dtype=np.float32)),
                          out.init(f"{spec.name}.act_hi", np.array(127 * s, dtype=np.float32))],
                 f"{spec.name}.act_clipped", f"{p}/Clip")
    zero = out.init(f"{spec.name}.act_zero", np.array(0, dtype=np.int8))
    q = out.node("QuantizeLinear", [x, scale, zero], f"{spec.name}.act_q", f"{p}/QuantizeLinear")
    return out.node("DequantizeLinear", [q, scale, zero], f"{spec.name}.act_dq", f"{p}/DequantizeLinear")


def lower(spec: LinearSpec, x: str, y: str) -> Lowered:
    """The nodes computing placeholder output `y` from input `x` for this layer (see the module docstring)."""
    out = Lowered()
    qdq = spec.act_scale is not None
    if spec.input_scale is not None:  # the order of edgec.core.layer_input: divide, then quantize
        x = out.node("Div", [x, out.init(f"{spec.name}.input_scale", spec.input_scale.astype(np.float32))],
                     f"{spec.name}.scaled_in", f"/{spec.name}/Div")
    if qdq:
        x = _emit_act_quant(spec, x, out)
    mm = y if spec.bias is None else f"{spec.name}.matmul_out"
    EMITTERS[type(spec.encoding)](spec.encoding, spec, x, mm, out, qdq and isinstance(spec.encoding, BlockInt))
    if spec.bias is not None:
        out.node("Add", [mm, out.init(f"{spec.name}.bias", spec.bias.astype(np.float32))], y, f"/{spec.name}/Add")
    return out
