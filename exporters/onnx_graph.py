"""Trace a flat model to ONNX and turn it into the exported graph.

`trace` runs torch.onnx's TorchScript exporter on a flat model (`onnx_decoder`,
`onnx_encoder`), which leaves one `edgec::Linear` placeholder per linear layer;
`replace_placeholders` substitutes each with its lowering (`onnx_lowering`);
`rename_initializers` gives the remaining tensors their Hugging Face names;
`quantize_tied_embedding` makes a compressed tied head's embedding read the head's
own quantized initializer.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import ModelProto, helper
from torch import nn

from edgec.core.errors import EdgecError
from edgec.exporters.onnx_encodings import BlockInt
from edgec.exporters.onnx_flat import PLACEHOLDER_DOMAIN, PLACEHOLDER_OP
from edgec.exporters.onnx_lowering import MS_DOMAIN, LinearSpec, Lowered, lower

OPSET = 20  # the newest the TorchScript exporter writes; float8 QuantizeLinear/DequantizeLinear need >= 19
IR_VERSION = 10  # ONNX Runtime 1.31 reads IR <= 13; onnx 1.23 would otherwise write 14 for new models


@dataclass
class GraphIO:
    """Names, example values and dynamic axes of a graph's inputs and outputs."""

    inputs: dict[str, torch.Tensor]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]


def decoder_io(vocab: int, layers: int, kv_heads: int, head_dim: int) -> GraphIO:
    """Decoder inputs/outputs as ONNX Runtime GenAI and optimum name them; traced with a non-empty past."""
    b, t, p = 2, 3, 2  # sizes > 1 so that the tracer keeps every axis symbolic
    kv = [f"{i}.{part}" for i in range(layers) for part in ("key", "value")]
    inputs = {"input_ids": torch.randint(0, vocab, (b, t)), "attention_mask": torch.ones(b, p + t, dtype=torch.long),
              "position_ids": torch.arange(p, p + t).expand(b, t).contiguous()}
    inputs |= {f"past_key_values.{n}": torch.zeros(b, kv_heads, p, head_dim) for n in kv}
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"}, "position_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"}}
    axes |= {f"past_key_values.{n}": {0: "batch_size", 2: "past_sequence_length"} for n in kv}
    axes |= {f"present.{n}": {0: "batch_size", 2: "total_sequence_length"} for n in kv}
    return GraphIO(inputs, ["logits", *(f"present.{n}" for n in kv)], axes)


def encoder_io(vocab: int) -> GraphIO:
    """Encoder inputs/outputs: input_ids, attention_mask, token_type_ids -> last_hidden_state."""
    b, t = 2, 5
    inputs = {"input_ids": torch.randint(0, vocab, (b, t)), "attention_mask": torch.ones(b, t, dtype=torch.long),
              "token_type_ids": torch.zeros(b, t, dtype=torch.long)}
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in (*inputs, "last_hidden_state")}
    return GraphIO(inputs, ["last_hidden_state"], axes)


def trace(flat: nn.Module, graph_io: GraphIO) -> ModelProto:
    """The flat model as ONNX, with its placeholders still in (TorchScript exporter: see docs/onnx.md)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(flat, tuple(graph_io.inputs.values()), buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(graph_io.inputs), output_names=graph_io.outputs,
                          dynamic_axes=graph_io.dynamic_axes, custom_opsets={PLACEHOLDER_DOMAIN: 1},
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def replace_placeholders(model: ModelProto, specs: Iterable[LinearSpec]) -> dict[str, Lowered]:
    """Substitute every placeholder by its layer's lowering; returns what each layer became."""
    graph = model.graph
    by_name = {s.name: s for s in specs}
    done: dict[str, Lowered] = {}
    nodes = []
    for node in graph.node:
        if node.domain != PLACEHOLDER_DOMAIN or node.op_type != PLACEHOLDER_OP:
            nodes.append(node)
            continue
        layer = node.attribute[0].s.decode()
        if layer not in by_name:
            raise EdgecError(f"layer {layer!r}: the traced graph has it, but nothing describes how to export it")
        done[layer] = lowered = lower(by_name.pop(layer), node.input[0], node.output[0])
        nodes.extend(lowered.nodes)
        graph.initializer.extend(lowered.initializers)
    if by_name:
        raise EdgecError(f"layer {next(iter(by_name))!r}: not found in the traced graph")
    del graph.node[:]
    graph.node.extend(nodes)
    removed = set(done)
    kept_info = [v for v in graph.value_info if not any(v.name.startswith(f"/{r}") for r in removed)]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    return done


def rename_initializers(model: ModelProto, names: dict[str, str]) -> None:
    """Rename initializers (and every reference to them) by `names`; others keep theirs."""
    graph = model.graph
    names = {old: new for old, new in names.items() if old in {i.name for i in graph.initializer}}
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]


def quantize_tied_embedding(model: ModelProto, embedding: str, head: LinearSpec) -> str:
    """Make the embedding lookup of a compressed tied head read the head's MatMulNBits weights.

    The (V, D) float table is replaced by `com.microsoft::GatherBlockQuantized` over the same
    quantized initializer, so the tied weights are stored once. Returns the op used.
    """
    enc = head.encoding
    if not isinstance(enc, BlockInt) or enc.zeros is not None or enc.bits not in (4, 8) or head.act_scale is not None:
        raise EdgecError(f"layer {head.name!r}: its weights are tied to the embedding, and format {head.format} has no "
                         f"exact quantized gather in ONNX Runtime (symmetric int4 and int8 have)")
    graph = model.graph
    qweight = next(i for i in graph.initializer if i.name == f"{head.name}.qweight")
    v, nb, blob = qweight.dims
    block, d = blob * 8 // enc.bits, enc.codes.shape[1]
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] == embedding]
    if len(gathers) != 1:
        raise EdgecError(f"{embedding}: expected one embedding lookup in the traced graph, found {len(gathers)}")
    gather = gathers[0]
    extra = [onnx.numpy_helper.from_array(np.array([v, nb, 1]), f"{embedding}.scales_shape"),
             onnx.numpy_helper.from_array(np.array([0, 0, nb * block]), f"{embedding}.flat_shape"),
             onnx.numpy_helper.from_array(np.array([0]), f"{embedding}.start"),
             onnx.numpy_helper.from_array(np.array([d]), f"{embedding}.end"),
             onnx.numpy_helper.from_array(np.array([-1]), f"{embedding}.axis")]
    p, out = f"/{embedding}", gather.output[0]
    new = [helper.make_node("Reshape", [f"{head.name}.scales", extra[0].name], [f"{embedding}.scales3"], name=f"{p}/Reshape_scales"),
           helper.make_node("GatherBlockQuantized", [qweight.name, gather.input[1], f"{embedding}.scales3"], [f"{embedding}.blocks"],
                            name=f"{p}/GatherBlockQuantized", domain=MS_DOMAIN, gather_axis=0, quantize_axis=2,
                            block_size=block, bits=enc.bits),
           helper.make_node("Reshape", [f"{embedding}.blocks", extra[1].name], [f"{embedding}.padded"], name=f"{p}/Reshape"),
           helper.make_node("Slice", [f"{embedding}.padded", extra[2].name, extra[3].name, extra[4].name], [out], name=f"{p}/Slice")]
    index = list(graph.node).index(gather)
    nodes = list(graph.node)
    nodes[index:index + 1] = new
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(extra)
    drop_unused_initializers(model)
    return "GatherBlockQuantized on the head's MatMulNBits weights"


def drop_unused_initializers(model: ModelProto) -> None:
    """Remove initializers no node reads."""
    used = {name for node in model.graph.node for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def finalize(model: ModelProto) -> None:
    """Opset imports for what the graph uses, and an IR version ONNX Runtime reads."""
    domains = {n.domain for n in model.graph.node}
    imports = [o for o in model.opset_import if o.domain not in (PLACEHOLDER_DOMAIN, MS_DOMAIN)]
    if MS_DOMAIN in domains:
        imports.append(helper.make_opsetid(MS_DOMAIN, 1))
    del model.opset_import[:]
    model.opset_import.extend(imports)
    model.ir_version = IR_VERSION
    model.producer_name = "edgec"
