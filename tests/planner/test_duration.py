"""The a-priori duration estimate: what it counts (its calibration against measured runs is in benchmarks/scale.py)."""

from __future__ import annotations

import pytest
import torch

from edgec.assignment import uniform_assignment
from edgec.core.formats import parse_format
from edgec.models.loading import load_model
from edgec.planner.duration import (
    MachineSpeed,
    ModelWork,
    compress_groups,
    compress_seconds,
    machine_speed,
    sensitivity_seconds,
    sweep_seconds,
)
from edgec.planner.sensitivity import SensitivitySettings
from edgec.planner.sensitivity_tasks import SensitivityTask
from edgec.planner.units import Candidate, planning_units

INT4 = parse_format("int4:g32")
UNIT_SPEED = MachineSpeed(1e9, 1e9, 1e-9, lambda fmt: 1e-9)  # round figures, so that the arithmetic can be checked


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    return load_model(tiny_llama_dir)


def test_machine_speed_is_measured():
    speed = machine_speed(torch.device("cpu"), width=64, rows=16)
    assert speed.torch_flops > 1e6 and speed.numpy_flops > 1e6 and 0 < speed.onload_s < 1e-6
    assert speed.rounding(INT4) > 0 and speed.rounding(parse_format("fp16")) == 0


def test_compress_groups_stack_fused_linears_of_one_configuration(llama):
    formats = uniform_assignment(llama.model, llama.adapter, INT4)
    layers = {name: (fmt, "gptq") for name, fmt in formats.items()}
    groups = compress_groups(llama, layers)
    refs = {ref.name: ref for ref in llama.adapter.linears(llama.model)}
    q, k, v = (refs[f"model.layers.0.self_attn.{p}_proj"].shape for p in "qkv")
    widths = {rows: width for _, _, rows, width in groups[0]}
    assert len(groups[0]) == 4 and widths[q[0] + k[0] + v[0]] == q[1]  # qkv, o, gate/up, down
    split = dict(layers, **{"model.layers.0.self_attn.k_proj": (INT4, "rtn")})
    assert len(compress_groups(llama, split)[0]) == 5


def test_compress_estimate_adds_calibration_only_for_calibrated_methods(llama):
    formats = uniform_assignment(llama.model, llama.adapter, INT4)
    work = ModelWork.of(llama)
    rtn = compress_seconds(work, compress_groups(llama, {n: (f, "rtn") for n, f in formats.items()}), 4, 64, UNIT_SPEED)
    gptq = compress_seconds(work, compress_groups(llama, {n: (f, "gptq") for n, f in formats.items()}), 4, 64, UNIT_SPEED)
    assert rtn == pytest.approx(sum(r.shape[0] * r.shape[1] for r in llama.adapter.linears(llama.model)) * 1e-9)
    assert gptq > rtn + 2 * work.forward_seconds(0, 4, 64, UNIT_SPEED, head=False)


def test_sweep_grows_with_the_width_cubed():
    assert sweep_seconds(1024, 8192, UNIT_SPEED) / sweep_seconds(1024, 1024, UNIT_SPEED) > 30


def test_sensitivity_loss_costs_the_blocks_after_the_unit(llama):
    units = planning_units(llama)
    settings = SensitivitySettings(samples=4, seq_len=64, loss_samples=2, loss_seq_len=32)
    work = ModelWork.of(llama)
    cand = Candidate(INT4, "rtn")
    first, last = units[0], [u for u in units if not u.is_head][-1]

    def cost(unit, loss):
        return sensitivity_seconds(work, [SensitivityTask(unit, cand, loss)], settings, UNIT_SPEED, tied_head=True)

    assert cost(first, True) - cost(first, False) == pytest.approx(
        work.forward_seconds(0, 2, 32, UNIT_SPEED, head=True))
    assert cost(last, True) - cost(last, False) == pytest.approx(
        work.forward_seconds(last.block, 2, 32, UNIT_SPEED, head=True))
    head = units[-1]
    untied = sensitivity_seconds(work, [SensitivityTask(head, cand, True)], settings, UNIT_SPEED, tied_head=False)
    assert untied < cost(head, True)  # an untied head's loss runs the head only
