"""`edgec profile --backend`: each runtime backend's kernels timed on its device, and the profile they make."""

import json

import numpy as np
import pytest
from conftest import run_cli

from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.kernels import triton as tk
from edgec.planner.predictor import fit_predictor
from edgec.planner.profile_targets import CpuTarget, ReferenceTarget, TritonTarget, profile_target
from edgec.planner.profiles import load_profile
from edgec.planner.profiling import QUICK_SHAPES, QUICK_TOKENS, linear_kernel, measure_kernels


class CountingTarget(ReferenceTarget):
    """The reference kernel, counting calls and waits, with samples of at least 50 ms."""

    min_sample_s = 0.05

    def __init__(self):
        self.calls = self.waits = 0

    def call(self, fmt, packed, shape, x):
        inner = super().call(fmt, packed, shape, x)

        def counted():
            self.calls += 1
            return inner()
        return counted

    def synchronize(self):
        self.waits += 1


def test_samples_repeat_fast_calls_and_wait_for_them():
    target = CountingTarget()
    timings = measure_kernels(["int4:g128"], [(16, 128)], [1], target=target, repeats=3, budget_s=0.0,
                              progress=False)
    assert len(timings) == 1 and timings[0].seconds < 0.05  # per call, not per sample
    # two warm-ups, then 3 samples (min_repeats) of many calls each: a tiny kernel takes far less than 50 ms
    assert target.calls > 2 + 3 * 10
    assert target.waits == 2 * (2 + 3)  # before and after the warm-ups and every sample


@pytest.mark.parametrize("fmt", ["int4:g128", "nf4:g64", "fp8", "2:4+int4:g128", "bf16"])
@pytest.mark.parametrize("target", [CpuTarget, TritonTarget], ids=["cpu", "triton"])
def test_a_target_times_the_same_linear_as_the_reference(target, fmt):
    """What a profile times is a correct y = x @ W^T, computed the way the backend computes it."""
    f = parse_format(fmt)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((96, 256), dtype=np.float32) * np.float32(0.05)
    x = rng.standard_normal((3, 256), dtype=np.float32)
    packed = f.quantize(w)
    got = target().call(f, packed, w.shape, x)()
    got = got.cpu().numpy() if hasattr(got, "cpu") else got
    want = linear_kernel(f, packed, w.shape, x)
    bound = np.abs(x) @ np.abs(f.dequantize(packed, w.shape)).T
    assert np.all(np.abs(got - want) <= 1e-5 * bound + 1e-6)


def test_auto_is_the_backend_the_runtime_picks():
    from edgec.runtime.backends import make_backend

    assert profile_target("auto").backend == make_backend("auto").name
    assert isinstance(profile_target("reference"), ReferenceTarget)
    cpu = profile_target("cpu", threads=1)
    assert cpu.threads == 1 and cpu.kind == "cpu"


@pytest.mark.parametrize("name, threads, message", [
    ("tpu", None, "unknown backend 'tpu' to profile"),
    ("reference", 2, "--threads sets the cpu backend's threads"),
])
def test_bad_targets_are_refused(name, threads, message):
    with pytest.raises(EdgecError, match=message):
        profile_target(name, threads)


def test_cpu_profile_records_the_cpu_kernels(tmp_path):
    out = tmp_path / "laptop.yaml"
    done = run_cli("profile", "--quick", "--backend", "cpu", "--threads", "1", "--name", "laptop",
                   "--formats", "int4:g128,nf4:g64,2:4", "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "cpu" and report["threads"] == 1 and report["kind"] == "cpu"
    assert np.isfinite(report["mape_heldout"]) and set(report["mape_by_format"]) == {"int4:g128", "nf4:g64", "2:4"}
    profile = load_profile(out)
    assert profile.name == "laptop" and profile.kind == "cpu"
    assert "edgec cpu kernels" in profile.measured.kernels and profile.measured.threads == 1
    assert len(profile.measured.timings) == 3 * len(QUICK_SHAPES) * len(QUICK_TOKENS)
    assert {t.tokens for t in profile.measured.timings} == set(QUICK_TOKENS)
    assert all(path.compute == "fp32" for path in profile.formats.values())


def test_triton_profile_in_the_interpreter_is_a_gpu_profile_the_planner_fits(tmp_path):
    out = tmp_path / "gpu-test.yaml"
    done = run_cli("profile", "--quick", "--backend", "triton", "--name", "gpu-test", "--formats", "int4:g128,fp16",
                   "-o", str(out), env={"TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr
    assert "held-out MAPE" in done.stdout and "triton backend" in done.stdout
    profile = load_profile(out)
    assert profile.kind == "gpu" and profile.name == "gpu-test"
    assert "interpreter" in profile.measured.kernels and "interpreter" in profile.description
    assert set(profile.peak_tops) == {"fp16", "fp32"}
    assert profile.formats["fp16"].native and profile.formats["fp16"].compute == "fp16"
    assert not profile.formats["int4:g128"].native and profile.formats["int4:g128"].compute == "fp16"
    assert len(profile.measured.timings) == 2 * len(QUICK_SHAPES) * len(QUICK_TOKENS)
    assert fit_predictor(profile).model.seconds(parse_format("int4:g128"), 4096, 4096, 1) > 0


@pytest.mark.parametrize("args, culprit", [
    (["--backend", "tpu"], "unknown backend 'tpu'"),
    (["--formats", "int9"], "--formats: unknown format 'int9'"),
    (["--formats", " , "], "--formats: give at least one format"),
    (["--formats", "2:4+fp9"], "--formats: bad format '2:4+fp9'"),
    (["--backend", "reference", "--threads", "2"], "--threads"),
    (["--name", "My GPU"], "--name 'My GPU'"),
    (["--name", "other"], "a profile named 'other' is written to other.yaml"),
])
def test_profile_command_refuses_bad_arguments(tmp_path, args, culprit):
    out = tmp_path / "p.yaml"
    done = run_cli("profile", "--quick", *args, "-o", str(out))
    assert done.returncode == 2
    assert done.stderr.startswith("edgec: error: ") and len(done.stderr.strip().splitlines()) == 1
    assert culprit in done.stderr
    assert not out.exists()


@pytest.mark.skipif(tk.gpu_present(), reason="this machine has a GPU")
def test_profiling_triton_without_a_gpu_says_so(tmp_path):
    out = tmp_path / "p.yaml"
    done = run_cli("profile", "--quick", "--backend", "triton", "-o", str(out), env={"TRITON_INTERPRET": "0"})
    assert done.returncode == 2 and "cannot profile the triton backend: no GPU here" in done.stderr
    assert not out.exists()

