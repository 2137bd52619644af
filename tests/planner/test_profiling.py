"""`edgec profile`: the timed kernel, the micro-benchmarks, and the latency predictor fitted to them."""

import numpy as np
import pytest
from conftest import run_cli

from edgec.core.formats import parse_format
from edgec.planner.latency import Roofline, latency_model
from edgec.planner.predictor import CACHE_CANDIDATES, MeasuredLatency, features, fit_predictor
from edgec.planner.profiles import KernelTiming, load_profile, validate_profile
from edgec.planner.profiling import DEFAULT_SHAPES, DEFAULT_TOKENS, HOST_FORMATS, linear_kernel, measure_kernels

BLAS_1 = {"OPENBLAS_NUM_THREADS": "1"}  # a busy 2-core machine stalls multi-threaded BLAS on tiny matmuls


def _profile(timings: list[KernelTiming] | None, formats=("fp16", "int8", "int4:g128", "2:4+int4:g128")):
    sources = {f: "test" for f in ("memory_bytes", "bandwidth_gbs", "peak_tops", "dispatch_us", "formats")}
    data = {"name": "test-host", "kind": "cpu", "description": "synthetic", "memory_bytes": "16GB",
            "usable_memory_fraction": 0.5, "bandwidth_gbs": 20.0, "peak_tops": {"fp32": 0.1}, "dispatch_us": 5.0,
            "formats": {f: {"compute": "fp32", "native": False} for f in formats}, "sources": sources}
    if timings is not None:
        data["measured"] = {"kernels": "synthetic", "threads": 1, "date": "2025-01-01",
                            "timings": [t.model_dump() for t in timings]}
    return validate_profile(data)


def test_host_formats_exclude_the_lossless_asym_grid():
    assert "int4:g32:asym" not in HOST_FORMATS
    assert all(str(parse_format(f)) == f for f in HOST_FORMATS)


@pytest.mark.parametrize("fmt", HOST_FORMATS)
def test_kernel_is_x_times_dequantized_weight(fmt):
    rng = np.random.default_rng(1)
    f = parse_format(fmt)
    w = rng.standard_normal((48, 256)).astype(np.float32)
    x = rng.standard_normal((3, 256)).astype(np.float32)
    packed = f.quantize(w)
    y = linear_kernel(f, packed, w.shape, x)
    assert y.dtype == np.float32 and y.shape == (3, 48)
    np.testing.assert_array_equal(y, x @ f.dequantize(f.quantize(w), w.shape).T)


def test_measure_kernels_times_every_point():
    timings = measure_kernels(["fp16", "int4:g32"], [(32, 64), (64, 128)], [1, 4], budget_s=0.05, progress=False)
    assert len(timings) == 8
    assert {(t.format, t.n, t.k, t.tokens) for t in timings} == {
        (f, n, k, tk) for f in ("fp16", "int4:g32") for n, k in [(32, 64), (64, 128)] for tk in (1, 4)}
    assert all(t.seconds > 0 for t in timings)


def _synthetic(formats, cache):
    """Timings that follow the predictor's law exactly, with known per-format coefficients."""
    rng = np.random.default_rng(0)
    coefs, timings = {}, []
    for name in formats:
        fmt = parse_format(name)
        coef = rng.uniform(0.5, 2.0, 6) * np.array([2e-5, 1e-10, 1e-9, 2e-9, 5e-12, 1e-9])
        coefs[name] = coef
        for n, k in DEFAULT_SHAPES:
            for tokens in DEFAULT_TOKENS:
                seconds = float(features(fmt, n, k, tokens, cache) @ coef)
                timings.append(KernelTiming(format=name, n=n, k=k, tokens=tokens, seconds=seconds))
    return coefs, timings


def test_predictor_recovers_a_linear_cost_law():
    cache = CACHE_CANDIDATES[3]
    formats = ("fp16", "int4:g128", "2:4+int4:g128")
    coefs, timings = _synthetic(formats, cache)
    fit = fit_predictor(_profile(timings))
    assert fit.mape_heldout < 1e-6
    assert set(fit.mape_by_format) == set(formats)
    assert fit.samples + fit.heldout == len(timings) and fit.heldout > 0
    assert len(fit.heldout_shapes) == len(DEFAULT_SHAPES[2::4])  # every 4th shape held out, whole
    assert fit.model.cache_bytes == cache
    for name in formats:
        fmt = parse_format(name)
        for n, k, tokens in [(384, 768, 7), (4096, 1024, 64), (8192, 8192, 1)]:  # shapes never measured
            want = float(features(fmt, n, k, tokens, cache) @ coefs[name])
            assert fit.model.seconds(fmt, n, k, tokens) == pytest.approx(want, rel=1e-6)


def test_formats_without_timings_fall_back_to_the_roofline():
    _, timings = _synthetic(("fp16",), CACHE_CANDIDATES[2])
    profile = _profile(timings)
    model = latency_model(profile)
    assert isinstance(model, MeasuredLatency)
    int8 = parse_format("int8")
    assert model.seconds(int8, 576, 1536, 16) == Roofline(profile).seconds(int8, 576, 1536, 16)
    assert model.seconds(parse_format("fp16"), 576, 1536, 16) != Roofline(profile).seconds(
        parse_format("fp16"), 576, 1536, 16)
    assert isinstance(latency_model(_profile(None)), Roofline)


def test_fitting_is_fast_on_a_full_profile():
    import time

    _, timings = _synthetic(HOST_FORMATS, CACHE_CANDIDATES[3])
    profile = _profile(timings, HOST_FORMATS)
    start = time.perf_counter()
    fit_predictor(profile)
    assert time.perf_counter() - start < 0.5  # the target is < 0.2 s; slack for a busy machine


def test_profile_command_quick_writes_a_loadable_profile(tmp_path):
    out = tmp_path / "host.yaml"
    done = run_cli("profile", "--quick", "--backend", "reference", "-o", str(out), env=BLAS_1)
    assert done.returncode == 0, done.stderr
    assert "held-out MAPE" in done.stdout and "%" in done.stdout
    assert str(out) in done.stdout
    profile = load_profile(out)
    assert profile.name == "host" and profile.kind == "cpu"
    assert profile.measured is not None and len(profile.measured.timings) == len(HOST_FORMATS) * 5 * 3
    assert profile.measured.threads == 1 and profile.measured.kernels.startswith("numpy reference")
    assert set(profile.formats) == set(HOST_FORMATS)
    assert all(not path.native and path.compute == "fp32" for path in profile.formats.values())
    assert all(profile.sources[f].startswith("measured by edgec profile on ")
               for f in ("memory_bytes", "bandwidth_gbs", "peak_tops", "dispatch_us", "formats"))
    again = run_cli("profile", "--quick", "--backend", "reference", "-o", str(out), "--json", env=BLAS_1)  # overwriting is allowed
    assert again.returncode == 0, again.stderr
    assert '"mape_heldout"' in again.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["host.yaml"]  # no temporary left beside it


def test_profile_command_refuses_a_missing_directory(tmp_path):
    out = tmp_path / "nowhere" / "host.yaml"
    done = run_cli("profile", "--quick", "-o", str(out), env=BLAS_1)
    assert done.returncode == 2
    assert done.stderr.startswith("edgec: error: ") and len(done.stderr.strip().splitlines()) == 1
    assert "does not exist" in done.stderr
    assert not out.exists() and not out.parent.exists()
