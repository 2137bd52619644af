"""The CPU kernels against the numpy reference, for every registered format and awkward shapes.

Every test runs on every SIMD level this CPU has (AVX2 and the portable C), so the
fallback that other machines run is proven here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from edgec.core.errors import FormatError
from edgec.core.formats import parse_format, registered_families
from edgec.kernels import cpu

EXAMPLES = [fmt for cls in registered_families().values() for fmt in cls.examples()]
# every group size, and inner formats the examples leave out
EXTRA = [parse_format(s) for s in (
    *(f"int4:g{g}{a}" for g in (64, 256) for a in ("", ":asym")),
    "int3:g64", "int3:g256:asym", "int2:g64:asym", "int2:g256", "nf4:g128", "nf4:g256",
    "2:4+int4:g128", "2:4+int3:g64:asym", "2:4+int2:g32", "2:4+bf16", "2:4+nf4:g256",
)]
FORMATS = EXAMPLES + EXTRA
# (N, K): N odd or 1; K not a multiple of any group, of 8, 16 or 32 (124: 28 past one), K over a 512-input tile
SHAPES = [(37, 200), (1, 68), (11, 124), (5, 1100), (3, 1540)]
DENSE_ONLY_SHAPES = [(7, 13), (9, 333)]  # K not divisible by 4: no 2:4
MS = (1, 2, 3, 4, 13, 67)  # one row, each fused few-row width, the tiled path (67 = 3 * 22 + 1)

LEVELS = cpu.simd_levels() if cpu.available() else []
needs_kernels = pytest.mark.skipif(not cpu.available(), reason=f"{cpu.unavailable_reason()}")


@pytest.fixture(params=LEVELS)
def level(request):
    """Run the test on one SIMD level, then restore the fastest."""
    cpu.set_simd(request.param)
    yield request.param
    cpu.set_simd(LEVELS[0])


def _weights(shape, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32) * 0.05
    w[0, : min(5, shape[1])] = [0.9, -1.3, 0.0, 1e-6, 3.0][: min(5, shape[1])]  # outliers and near-zeros
    return w


def _bound(x, w, rtol=1e-5):
    """float32 summation-order tolerance: rtol * ||x_m|| * ||W_n||."""
    return rtol * np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :] + 1e-30


def _cases():
    for fmt in FORMATS:
        for shape in SHAPES + ([] if fmt.is_sparse else DENSE_ONLY_SHAPES):
            yield pytest.param(fmt, shape, id=f"{fmt}-{shape[0]}x{shape[1]}")


def test_extension_is_built_where_a_compiler_exists():
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler here: the extension is optional")
    assert cpu.available(), cpu.unavailable_reason()
    assert cpu.simd() in cpu.simd_levels() and "generic" in cpu.simd_levels()


def test_every_registered_family_has_a_converter():
    assert set(registered_families()) <= set(cpu.CONVERTERS)


@needs_kernels
@pytest.mark.parametrize("fmt, shape", list(_cases()))
def test_linear_matches_the_numpy_reference(fmt, shape, level):
    packed = fmt.quantize(_weights(shape))
    w = fmt.dequantize(packed, shape)
    p = cpu.prepare(fmt, packed, shape)
    rng = np.random.default_rng(1)
    for m in MS:
        padded = np.full((m, shape[1] + 8), np.nan, dtype=np.float32)  # NaN right after each row: reading past K shows
        x = padded[:, : shape[1]]
        x[:] = rng.standard_normal((m, shape[1]))
        ref = x.astype(np.float64) @ w.astype(np.float64).T
        y = cpu.linear(p, x)
        assert y.shape == (m, shape[0]) and y.dtype == np.float32
        err = np.abs(y - ref)
        assert (err <= _bound(x, w)).all(), f"m={m}: worst {err.max():.3g}"


@needs_kernels
@pytest.mark.parametrize("fmt, shape", [c for c in _cases() if c.values[1][1] >= 200])
def test_dequantization_is_bit_exact(fmt, shape, level):
    """x = identity: every output is one weight times 1 plus exact zeros, so y == W.T exactly."""
    packed = fmt.quantize(_weights(shape, seed=2))
    w = fmt.dequantize(packed, shape)
    p = cpu.prepare(fmt, packed, shape)
    eye = np.eye(shape[1], dtype=np.float32)
    np.testing.assert_array_equal(cpu.linear(p, eye), w.T)  # tiled path
    for k in (0, shape[1] // 2, shape[1] - 4):  # single-row and few-row paths
        np.testing.assert_array_equal(cpu.linear(p, eye[k : k + 1])[0], w[:, k])
        np.testing.assert_array_equal(cpu.linear(p, eye[k : k + 4]), w[:, k : k + 4].T)


@needs_kernels
@pytest.mark.parametrize("m", [1, 13])
def test_one_and_two_threads_give_identical_results(m):
    fmt, shape = parse_format("int4:g64:asym"), (301, 576)
    p = cpu.prepare(fmt, fmt.quantize(_weights(shape)), shape)
    x = np.random.default_rng(3).standard_normal((m, shape[1])).astype(np.float32)
    before = cpu.threads()
    try:
        cpu.set_threads(1)
        y1 = cpu.linear(p, x)
        cpu.set_threads(2)
        y2 = cpu.linear(p, x)
    finally:
        cpu.set_threads(before)
    np.testing.assert_array_equal(y1, y2)


@needs_kernels
def test_concurrent_calls_from_python_threads():
    fmt, shape = parse_format("nf4:g64"), (256, 512)
    p = cpu.prepare(fmt, fmt.quantize(_weights(shape)), shape)
    xs = [np.random.default_rng(i).standard_normal((1 + i % 3, shape[1])).astype(np.float32) for i in range(8)]
    expected = [cpu.linear(p, x) for x in xs]
    failures = []

    def work(i):
        for _ in range(30):
            if not np.array_equal(cpu.linear(p, xs[i]), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@needs_kernels
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_use_the_threads_again():
    """The parent's worker threads do not exist in a forked child; the pool must start new ones."""
    code = (
        "import os, sys, numpy as np\n"
        "from edgec.kernels import cpu\n"
        "from edgec.core.formats import parse_format\n"
        "fmt = parse_format('int8'); w = np.arange(512 * 512, dtype=np.float32).reshape(512, 512) % 7 - 3\n"
        "p = cpu.prepare(fmt, fmt.quantize(w), (512, 512)); cpu.set_threads(2)\n"
        "x = np.ones((1, 512), np.float32); y = cpu.linear(p, x)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.array_equal(cpu.linear(p, x), y) else 3)\n"
        "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@needs_kernels
def test_read_only_mapped_buffers_are_used_without_copies(tmp_path):
    fmt, shape = parse_format("2:4+int4:g32:asym"), (33, 256)
    packed = fmt.quantize(_weights(shape))
    path = tmp_path / "w.bin"
    offsets, blob = {}, b""
    for name, a in packed.items():
        offsets[name] = (len(blob), a.dtype, a.shape)
        blob += a.tobytes()
    path.write_bytes(blob)
    mapped = {name: np.memmap(path, dtype=dt, mode="r", offset=off, shape=shp) for name, (off, dt, shp) in offsets.items()}
    assert not any(a.flags.writeable for a in mapped.values())
    p = cpu.prepare(fmt, mapped, shape)
    assert np.shares_memory(p.arrays["q"], mapped["values.qdata"])
    assert np.shares_memory(p.arrays["meta"], mapped["meta"])
    x = np.random.default_rng(0).standard_normal((2, shape[1])).astype(np.float32)
    x.flags.writeable = False
    ref = x.astype(np.float64) @ fmt.dequantize(packed, shape).astype(np.float64).T
    assert (np.abs(cpu.linear(p, x) - ref) <= _bound(x, fmt.dequantize(packed, shape))).all()


@needs_kernels
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_prepare_keeps_the_stored_codes_and_no_float_copy(fmt):
    shape = (64, 512)
    packed = fmt.quantize(_weights(shape))
    p = cpu.prepare(fmt, packed, shape)
    stored = fmt.nbytes(shape)
    assert p.nbytes <= 1.5 * stored + 64, (p.nbytes, stored)
    assert p.nbytes < shape[0] * shape[1] * 4  # never a float32 copy
    codes = next(name for name in packed if name.endswith(("qdata", "values")))
    assert np.shares_memory(p.arrays["q"], packed[codes])


@needs_kernels
def test_output_buffer_is_filled_in_place_and_rows_may_be_strided():
    fmt, shape = parse_format("int4:g128"), (40, 300)
    packed = fmt.quantize(_weights(shape))
    p = cpu.prepare(fmt, packed, shape)
    big = np.random.default_rng(0).standard_normal((5, 400)).astype(np.float32)
    x = big[:, :300]  # rows 400 floats apart
    out = np.full((5, 40), np.nan, dtype=np.float32)
    assert cpu.linear(p, x, out) is out
    np.testing.assert_array_equal(out, cpu.linear(p, np.ascontiguousarray(x)))


@needs_kernels
def test_fp8_nan_codes_propagate_like_the_reference():
    fmt, shape = parse_format("fp8"), (6, 64)
    packed = fmt.quantize(_weights(shape))
    packed["qdata"][2, 5] = 0x7F
    p = cpu.prepare(fmt, packed, shape)
    for m in (1, 4):
        y = cpu.linear(p, np.ones((m, 64), dtype=np.float32))
        ref = np.ones((m, 64)) @ fmt.dequantize(packed, shape).T
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
        assert np.isnan(y[:, 2]).all()


# ---- int8 activations -------------------------------------------------------------------------

Q8_FORMATS = [parse_format(s) for s in ("int8", *(f"int4:g{g}{a}" for g in (32, 64, 128, 256) for a in ("", ":asym")))]


@needs_kernels
@pytest.mark.parametrize("fmt", Q8_FORMATS, ids=str)
@pytest.mark.parametrize("shape", [(37, 200), (19, 1100), (8, 64)], ids=str)
def test_int8_activations_stay_within_their_error_bound(fmt, shape, level):
    """|y_int8 - y_exact| <= ||W_n|| * ||x - d*xq||, with |x - d*xq| <= d/2 per input (d = block absmax / 127)."""
    packed = fmt.quantize(_weights(shape))
    w = fmt.dequantize(packed, shape)
    p = cpu.prepare(fmt, packed, shape)
    assert p.int8_activations
    rng = np.random.default_rng(4)
    k32 = shape[1] // 32 * 32
    for m in (1, 3, 4, 13):
        x = rng.standard_normal((m, shape[1])).astype(np.float32)
        exact = cpu.linear(p, x)
        approx = cpu.linear(p, x, accuracy="int8")
        d = np.abs(x[:, :k32].reshape(m, -1, 32)).max(axis=2) / 127
        x_err = np.sqrt((32 * (d / 2) ** 2).sum(axis=1))
        bound = 1.01 * x_err[:, None] * np.linalg.norm(w, axis=1)[None, :] + _bound(x, w)
        assert (np.abs(approx - exact) <= bound).all()
        integer_path = k32 > 0 and (m <= 4 or (level != "generic" and (fmt.family != "int8" or level == "avx2+vnni")))
        assert not np.array_equal(approx, exact) or not integer_path


@needs_kernels
@pytest.mark.parametrize("fmt", Q8_FORMATS, ids=str)
@pytest.mark.parametrize("m", [5, 8, 13, 67])
def test_int8_activations_on_many_rows_equal_them_row_by_row(fmt, m, level):
    """The tiled many-row kernel (q8_gemm.c) computes what the per-row kernel does, up to summation order."""
    shape = (21, 1100)  # 21 rows: two full 8-row tiles and a partial one; 1100: a tail past the last block
    p = cpu.prepare(fmt, fmt.quantize(_weights(shape)), shape)
    x = np.random.default_rng(6).standard_normal((m, shape[1])).astype(np.float32)
    many = cpu.linear(p, x, accuracy="int8")
    rows = np.concatenate([cpu.linear(p, x[i:i + 1], accuracy="int8") for i in range(m)])
    if level == "generic" or (fmt.family == "int8" and level != "avx2+vnni"):
        np.testing.assert_array_equal(many, cpu.linear(p, x))  # these take the exact path for many rows
    else:
        # int8 weights are stored offset by 128 and the offset's sum subtracted again: that
        # cancellation costs float32 digits, still far below the activations' quantization error
        atol = (3e-5 if fmt.family == "int8" else 2e-6) * np.abs(rows).max()
        np.testing.assert_allclose(many, rows, atol=atol, rtol=1e-5)


@needs_kernels
def test_int8_activations_fall_back_to_exact_where_they_do_not_apply():
    x = np.random.default_rng(5).standard_normal((1, 256)).astype(np.float32)
    for text, m in (("nf4:g64", 1), ("nf4:g64", 13), ("2:4+int4:g32", 1)):
        fmt = parse_format(text)
        p = cpu.prepare(fmt, fmt.quantize(_weights((24, 256))), (24, 256))
        xm = np.repeat(x, m, axis=0)
        np.testing.assert_array_equal(cpu.linear(p, xm, accuracy="int8"), cpu.linear(p, xm))


# ---- bad input --------------------------------------------------------------------------------

@pytest.fixture()
def int4_weight():
    fmt, shape = parse_format("int4:g32"), (10, 64)
    return cpu.prepare(fmt, fmt.quantize(_weights(shape)), shape)


@needs_kernels
@pytest.mark.parametrize("x, out, error, words", [
    (np.ones((2, 64)), None, TypeError, "float32, got float64"),
    (np.ones((2, 64), np.float16), None, TypeError, "float32, got float16"),
    (np.ones((2, 63), np.float32), None, ValueError, "(M, 64)"),
    (np.ones((2, 128), np.float32)[:, ::2], None, ValueError, "contiguous"),
    (np.ones((2, 64), np.float32), np.empty((2, 11), np.float32), ValueError, "shape (2, 10)"),
    (np.ones((2, 64), np.float32), np.empty((3, 10), np.float32), ValueError, "shape (2, 10)"),
    (np.ones((2, 64), np.float32), np.empty((2, 10), np.float64), TypeError, "out must be float32"),
    ([[1.0] * 64], None, TypeError, "x must be a float32 array"),
])
def test_bad_arguments_are_refused_clearly(int4_weight, x, out, error, words):
    with pytest.raises(error, match=None) as exc:
        cpu.linear(int4_weight, x, out)
    assert words in str(exc.value)


@needs_kernels
def test_one_dimensional_x_read_only_out_and_overlap_are_refused(int4_weight):
    with pytest.raises(ValueError, match="shape"):
        cpu.linear(int4_weight, np.ones(64, np.float32), np.empty((64, 10), np.float32))
    out = np.empty((1, 10), np.float32)
    out.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        cpu.linear(int4_weight, np.ones((1, 64), np.float32), out)
    buf = np.zeros(64 + 10, np.float32)
    with pytest.raises(ValueError, match="overlap"):
        cpu.linear(int4_weight, buf[:64].reshape(1, 64), buf[54:].reshape(1, 20)[:, :10])
    with pytest.raises(ValueError, match="accuracy"):
        cpu.linear(int4_weight, np.ones((1, 64), np.float32), accuracy="fast")


@needs_kernels
def test_bad_buffers_are_refused_by_name():
    fmt, shape = parse_format("int4:g32:asym"), (10, 64)
    packed = fmt.quantize(_weights(shape))
    with pytest.raises(FormatError, match="'min' is missing"):
        cpu.prepare(fmt, {k: v for k, v in packed.items() if k != "min"}, shape)
    with pytest.raises(FormatError, match="'scale' must be float16"):
        cpu.prepare(fmt, {**packed, "scale": packed["scale"].astype(np.float32)}, shape)
    with pytest.raises(FormatError, match="'qdata' must be uint8 \\(10, 32\\)"):
        cpu.prepare(fmt, {**packed, "qdata": packed["qdata"][:, :16]}, shape)
    with pytest.raises(FormatError, match="not finite"):
        cpu.prepare(fmt, {**packed, "scale": np.full_like(packed["scale"], np.inf)}, shape)
    sparse = parse_format("2:4")
    sp = sparse.quantize(_weights(shape))
    with pytest.raises(FormatError, match="corrupt metadata"):
        cpu.prepare(sparse, {**sp, "meta": np.zeros_like(sp["meta"])}, shape)


@needs_kernels
def test_settings_are_checked():
    with pytest.raises(ValueError, match="threads"):
        cpu.set_threads(0)
    with pytest.raises(ValueError, match="not available"):
        cpu.set_simd("avx1024")
    assert cpu.threads() >= 1


def test_without_the_extension_the_package_still_imports_and_says_why(tmp_path):
    code = (
        "import sys; sys.modules['edgec.kernels._cpu'] = None\n"
        "from edgec.kernels import cpu\n"
        "assert not cpu.available()\n"
        "assert '_cpu' in cpu.unavailable_reason(), cpu.unavailable_reason()\n"
        "try:\n"
        "    cpu.simd()\n"
        "except RuntimeError as exc:\n"
        "    assert 'unavailable' in str(exc)\n"
        "else:\n"
        "    sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
