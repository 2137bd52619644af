"""A layer with both an unfolded input scale and quantized activations computes `edgec.core.layer_input`
everywhere: every runtime backend (and the Triton decoder's device projection), the ONNX lowering and
the toolchain's torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exporters.test_onnx_export import run_layer

from edgec.activation_quant import attach_activation_quant
from edgec.core.formats import FP8, Int8
from edgec.core.layer_input import ActivationQuant, layer_input
from edgec.exporters.onnx_encodings import convert
from edgec.exporters.onnx_lowering import LinearSpec
from edgec.runtime.backends import available_backends, make_backend

SHAPE = (24, 64)  # (N, K)
FORMATS = [Int8(), FP8()]


def layer(fmt):
    """A stored weight, an input scale spanning 30x, an activation scale that clips the largest inputs, and inputs."""
    rng = np.random.default_rng(7)
    packed = fmt.quantize(rng.standard_normal(SHAPE).astype(np.float32))
    input_scale = np.exp(rng.uniform(-1.7, 1.7, SHAPE[1])).astype(np.float32)
    x = (rng.standard_normal((5, SHAPE[1])) * 3).astype(np.float32)
    act_scale = float(np.abs(x / input_scale).max()) / (100 if isinstance(fmt, Int8) else 300)
    want = layer_input(x, input_scale, act_scale, fmt) @ fmt.dequantize(packed, SHAPE).T
    return packed, input_scale, act_scale, x, want


def test_the_definition_divides_before_it_quantizes():
    fmt = Int8()
    x, s = np.array([[3.0, -5.0]], np.float32), np.array([2.0, 4.0], np.float32)
    # 3/2 = 1.5 is on the grid; -5/4 = -1.25 is 2.5 steps, rounded half to even to 2 steps. Quantizing
    # before dividing would give -1.25 (-10 steps, then /4).
    np.testing.assert_array_equal(layer_input(x, s, 0.5, fmt), [[1.5, -1.0]])
    np.testing.assert_array_equal(layer_input(x, None, 0.5, fmt), [[3.0, -5.0]])
    np.testing.assert_array_equal(layer_input(x, s, None, None), x / s)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("backend", [name for name, why in available_backends().items() if why is None])
def test_every_backend(fmt, backend):
    packed, input_scale, act_scale, x, want = layer(fmt)
    buffers = {**packed, "input_scale": input_scale, "act_scale": np.array([act_scale], np.float32)}
    linear = make_backend(backend).linear(fmt, buffers, SHAPE)
    np.testing.assert_allclose(linear(x), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_the_triton_decoders_device_projection(fmt):
    if available_backends()["triton"] is not None:
        pytest.skip(available_backends()["triton"])
    from edgec.runtime.backends.triton_decoder import _Projection

    packed, input_scale, act_scale, x, want = layer(fmt)
    buffers = {**packed, "input_scale": input_scale, "act_scale": np.array([act_scale], np.float32)}
    linear = make_backend("triton").linear(fmt, buffers, SHAPE)
    projection = _Projection(linear, lambda a: None if a is None else torch.from_numpy(np.array(a, dtype=np.float32)))
    np.testing.assert_allclose(projection(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_the_onnx_lowering(fmt):
    packed, input_scale, act_scale, x, want = layer(fmt)
    spec = LinearSpec("blk.q", str(fmt), convert(fmt, packed, SHAPE, "blk.q"), None, input_scale, act_scale)
    np.testing.assert_allclose(run_layer(spec, x), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_the_torch_model(fmt):
    packed, input_scale, act_scale, x, want = layer(fmt)
    module = torch.nn.Linear(SHAPE[1], SHAPE[0], bias=False)
    with torch.no_grad():  # what compression leaves in the torch model: Q(W·diag(s))·diag(s)⁻¹
        module.weight.copy_(torch.from_numpy(fmt.dequantize(packed, SHAPE) / input_scale))
    model = torch.nn.Sequential(module)
    attach_activation_quant(model, {"0": ActivationQuant(act_scale, fmt, input_scale)})
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
