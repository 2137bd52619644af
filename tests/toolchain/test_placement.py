"""Block onloading and the compute device: a 16-bit model held in 16 bit computes exactly as in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from edgec.calibration.placement import compute_device, host_dtype, onloaded, streamed, to_device
from edgec.compress import CalibrationSettings, compress
from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.models.loading import load_model
from edgec.passes import LayerConfig, configured_passes
from edgec.planner.sensitivity import SensitivitySettings, measure_sensitivity
from edgec.planner.units import planning_units, unit_candidates

CPU = torch.device("cpu")


def test_compute_device_names():
    assert compute_device("cpu") == CPU
    assert compute_device(" CPU ") == CPU
    assert compute_device("auto") == (torch.device("cuda") if torch.cuda.is_available() else CPU)
    for bad in ("tpu", "cuda:x", "gpu", ""):
        with pytest.raises(EdgecError, match="expected auto, cpu, cuda or cuda:N"):
            compute_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_in_one_line(spec):
    with pytest.raises(EdgecError, match=f"--compute-device {spec}: torch sees no CUDA GPU"):
        compute_device(spec)


def test_host_dtype_keeps_only_16_bit_checkpoint_types():
    assert host_dtype(LlamaConfig(dtype="bfloat16")) == torch.bfloat16
    assert host_dtype(LlamaConfig(dtype="float16")) == torch.float16
    assert host_dtype(LlamaConfig(dtype="float32")) == torch.float32
    assert host_dtype(LlamaConfig()) == torch.float32


def test_onloaded_computes_in_float32_and_writes_back_into_the_same_storage():
    torch.manual_seed(0)
    embed = torch.nn.Embedding(8, 4).to(torch.bfloat16)
    head = torch.nn.Linear(4, 8, bias=False).to(torch.bfloat16)
    head.weight = embed.weight  # tied, as a tied LM head
    storage = head.weight.data_ptr()
    with onloaded(head, CPU):
        assert head.weight.dtype == torch.float32 and embed.weight.dtype == torch.float32  # still tied
        exact = torch.full((8, 4), 1 + 2**-12)  # not representable in bfloat16
        head.weight.data.copy_(exact)
    assert head.weight.dtype == torch.bfloat16 and head.weight.data_ptr() == storage
    assert embed.weight is head.weight
    assert torch.equal(head.weight.float(), exact.to(torch.bfloat16).float())


def test_onloaded_leaves_a_float32_module_on_its_device_untouched():
    layer = torch.nn.Linear(4, 4)
    before = layer.weight.data_ptr()
    with onloaded(layer, CPU):
        assert layer.weight.data_ptr() == before


def test_onloaded_restores_the_host_type_when_the_work_fails():
    layer = torch.nn.Linear(4, 4).to(torch.float16)
    with pytest.raises(RuntimeError), onloaded(layer, CPU):
        raise RuntimeError("boom")
    assert layer.weight.dtype == torch.float16


def test_streamed_onloads_each_submodule_only_while_it_runs_and_never_writes_the_host_tensors():
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).to(torch.bfloat16)
    homes = [p.data_ptr() for p in block.parameters()]
    seen = []
    x = torch.randn(3, 4)
    with streamed(block, CPU):
        handle = block[2].register_forward_pre_hook(  # runs after streamed's own hook
            lambda mod, args: seen.append((block[0].weight.dtype, mod.weight.dtype)))
        out = block(x)
        handle.remove()
    with onloaded(block, CPU):
        expected = block(x)
    assert seen == [(torch.bfloat16, torch.float32)]  # the first layer went back before the last one ran
    assert torch.equal(out, expected) and out.dtype == torch.float32
    assert [p.data_ptr() for p in block.parameters()] == homes and block[0].weight.dtype == torch.bfloat16
    with pytest.raises(RuntimeError), streamed(block, CPU):
        block(torch.randn(3, 5))  # the first layer fails inside its forward
    assert all(p.dtype == torch.bfloat16 for p in block.parameters())


@pytest.mark.parametrize("family", ["tiny_llama_dir", "tiny_gemma3_dir", "tiny_phi3_dir", "tiny_gpt2_dir",
                                    "tiny_bert_dir"])
def test_a_streamed_forward_through_the_blocks_is_the_onloaded_one(family, request, monkeypatch, tmp_path):
    """The planner's loss windows run the later blocks streamed: bit for bit what onloading each whole block gives,
    for each family's block structure."""
    from edgec.calibration.windows import calibration_windows
    from edgec.planner import output_loss

    original = load_model(request.getfixturevalue(family))
    path = tmp_path / "bf16"
    original.model.to(torch.bfloat16).save_pretrained(path)
    original.tokenizer.save_pretrained(path)
    loaded = load_model(path, keep_16bit=True)
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    ids, _ = calibration_windows(loaded.tokenizer, 1, 16)
    loss = output_loss.OutputLoss(loaded, ids, CPU)
    streamed_out = loss._from_block(0, loss.hidden)
    monkeypatch.setattr(output_loss, "streamed", onloaded)
    assert torch.equal(streamed_out, loss._from_block(0, loss.hidden))
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())


def test_to_device_converts_nested_floating_tensors_only():
    value = {"a": (torch.ones(2, dtype=torch.bfloat16), torch.arange(3)), "b": [None, 1.5]}
    out = to_device(value, CPU)
    assert out["a"][0].dtype == torch.float32 and out["a"][1].dtype == torch.int64
    assert out["b"] == [None, 1.5]


@pytest.fixture(scope="module")
def bf16_llama_dir(tiny_llama_dir, tmp_path_factory):
    """The tiny LLaMA saved in bfloat16, as most released checkpoints are."""
    path = tmp_path_factory.mktemp("tiny-llama-bf16")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.bfloat16)
    model.save_pretrained(path)
    load_model(tiny_llama_dir).tokenizer.save_pretrained(path)
    return path


def test_a_bfloat16_checkpoint_is_held_in_bfloat16_only_when_asked(bf16_llama_dir):
    assert next(load_model(bf16_llama_dir, keep_16bit=True).model.parameters()).dtype == torch.bfloat16
    assert next(load_model(bf16_llama_dir).model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("method,text", [("gptq", "int4:g32"), ("awq", "int4:g32"), ("sparsegpt", "2:4")])
def test_compressing_a_model_held_in_bfloat16_gives_the_float32_results(bf16_llama_dir, method, text):
    """The blocks are onloaded in float32, so holding the weights in 16 bit changes memory, not one stored bit."""
    results = []
    for keep in (True, False):
        loaded = load_model(bf16_llama_dir, keep_16bit=keep)
        request = {ref.name: LayerConfig(parse_format(text), method) for ref in loaded.adapter.linears(loaded.model)}
        passes = configured_passes(damp=0.01, act_order=True, clip=True, alpha=0.5)
        results.append(compress(loaded, request, CalibrationSettings(samples=4, seq_len=32), passes, progress=False))
    held, full = results
    assert held.layers.keys() == full.layers.keys()
    for name in held.layers:
        for buffer, array in held.layers[name].packed.items():
            np.testing.assert_array_equal(array, full.layers[name].packed[buffer], err_msg=f"{name}::{buffer}")


def test_sensitivity_of_a_model_held_in_bfloat16_is_the_float32_one(bf16_llama_dir):
    tables = []
    for keep in (True, False):
        loaded = load_model(bf16_llama_dir, keep_16bit=keep)
        units = planning_units(loaded, fuse=True, include_head=True)
        formats = [parse_format(t) for t in ("int4:g32", "int8")]
        candidates = {u.label: unit_candidates(u, formats, "auto") for u in units}
        settings = SensitivitySettings(samples=2, seq_len=32, loss_samples=1, loss_seq_len=32)
        tables.append(measure_sensitivity(loaded, units, candidates, settings, cache=None, progress=False))
    held, full = tables
    assert held.errors.keys() == full.errors.keys()
    for key, errors in held.errors.items():
        np.testing.assert_allclose([errors.tensor, errors.output or 0, errors.loss],
                                   [full.errors[key].tensor, full.errors[key].output or 0, full.errors[key].loss],
                                   rtol=1e-5, atol=1e-9, err_msg=str(key))
    assert any(e.loss > 0 for e in held.errors.values())


def test_evaluating_a_model_held_in_bfloat16_gives_the_float32_figures(bf16_llama_dir):
    from edgec.evaluation.run import EvalSettings, evaluate

    settings = EvalSettings(format="int4:g32", include_head=True, seq_len=32, max_tokens=128, progress=False)
    held, full = (evaluate(load_model(bf16_llama_dir, keep_16bit=keep), settings).lm for keep in (True, False))
    assert held.perplexity_original == pytest.approx(full.perplexity_original, rel=1e-6)
    assert held.kl_mean == pytest.approx(full.kl_mean, rel=1e-5) and held.kl_mean > 0
    assert held.top1_agreement == full.top1_agreement
