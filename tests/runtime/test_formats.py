"""Every registered format, tested the moment it exists (via Format.examples)."""

import numpy as np
import pytest

from edgec.core.errors import FormatError
from edgec.core.formats import Int4, base, format_grammar, parse_format, registered_families
from edgec.core.formats.base import GroupQuantizedFormat
from edgec.core.formats.fp8 import e4m3fn_to_float32, float32_to_e4m3fn
from edgec.core.formats.nf4 import NF4_CODEBOOK
from edgec.core.formats.sparse24 import Sparse24

ALL_FORMATS = [fmt for cls in registered_families().values() for fmt in cls.examples()]
SHAPES = [(8, 256), (5, 96), (3, 100)]  # (3, 100): K not a multiple of any group size


def _weights(shape, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32) * 0.05
    w[0, :7] = [0.9, -1.3, 0.0, 1e-6, -1e-7, 0.2, 3.0]  # outliers and near-zeros
    return w


def _fits(fmt, shape):
    return not (fmt.is_sparse and shape[1] % 4)


@pytest.mark.parametrize("cls", list(registered_families().values()), ids=lambda c: c.family)
def test_every_family_has_examples_that_round_trip_as_strings(cls):
    examples = cls.examples()
    assert examples
    for fmt in examples:
        assert parse_format(str(fmt)) == fmt
        assert parse_format(str(fmt).upper()) == fmt


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_pack_unpack_is_bit_exact(fmt, shape):
    if not _fits(fmt, shape):
        pytest.skip("shape not storable in this format (refusal tested separately)")
    w = _weights(shape)
    enc = fmt.encode(w)
    packed = fmt.pack(enc, shape)
    back = fmt.unpack(packed, shape)
    assert back.keys() == enc.keys()
    for key in enc:
        assert back[key].dtype == enc[key].dtype, key
        np.testing.assert_array_equal(back[key], enc[key], err_msg=key)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_packed_buffers_match_declared_layout_and_bits(fmt, shape):
    if not _fits(fmt, shape):
        pytest.skip("shape not storable in this format")
    packed = fmt.quantize(_weights(shape))
    declared = fmt.buffers(shape)
    assert [b.name for b in declared] == list(packed)
    for b in declared:
        assert packed[b.name].dtype == np.dtype(b.dtype), b.name
        assert packed[b.name].shape == b.shape, b.name
    total = sum(a.nbytes for a in packed.values())
    assert total == fmt.nbytes(shape)
    assert fmt.bits_per_weight(shape) == pytest.approx(8 * total / (shape[0] * shape[1]))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_dequantized_error_within_format_bound(fmt, shape):
    if not _fits(fmt, shape):
        pytest.skip("shape not storable in this format")
    w = _weights(shape, seed=1)
    err = np.abs(fmt.dequantize(fmt.quantize(w), shape) - w)
    bound = fmt.error_bound(w)
    assert bound.shape == w.shape
    worst = np.unravel_index(np.argmax(err - bound), w.shape)
    assert (err <= bound).all(), f"{fmt}: error {err[worst]} > bound {bound[worst]} at {worst}"


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_rows_are_independent_and_fake_quantize_by_bands_is_exact(fmt, monkeypatch):
    w = np.random.default_rng(3).standard_normal((9, 256)).astype(np.float32) * np.linspace(0.1, 3, 9)[:, None]
    whole = fmt.decode(fmt.encode(w), w.shape)
    band = fmt.decode(fmt.encode(w[2:5]), (3, 256))
    np.testing.assert_array_equal(band, whole[2:5])
    monkeypatch.setattr(base, "BAND_ELEMENTS", 2 * 256)  # bands of two rows, the last one a single row
    np.testing.assert_array_equal(fmt.fake_quantize(w), whole)
    encoded, decoded = fmt.encode_decode(w)
    np.testing.assert_array_equal(decoded, whole)
    for key, value in fmt.encode(w).items():
        np.testing.assert_array_equal(encoded[key], value, err_msg=key)
        assert encoded[key].dtype == value.dtype


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_all_zero_and_constant_weights(fmt):
    for w in (np.zeros((4, 64), np.float32), np.full((4, 64), 0.25, np.float32)):
        deq = fmt.fake_quantize(w)
        assert np.isfinite(deq).all()
        if not fmt.is_sparse:
            np.testing.assert_allclose(deq, w, atol=float(fmt.error_bound(w).max()))


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_non_finite_weights_are_refused(fmt):
    w = _weights((4, 64))
    w[1, 3] = np.nan
    with pytest.raises(FormatError, match="NaN"):
        fmt.quantize(w)


def test_bits_per_weight_of_common_formats():
    shape = (576, 1536)
    expected = {
        "fp16": 16, "bf16": 16, "int8": 8 + 16 / 1536, "fp8": 8 + 32 / 1536,
        "int4:g128": 4.125, "int4:g32:asym": 5.0, "int3:g128": 3.125, "int2:g64": 2.25,
        "nf4:g64": 4.25, "2:4": 9.0, "2:4+int4:g128": 1 + (4.125 / 2),
    }
    for text, bits in expected.items():
        assert parse_format(text).bits_per_weight(shape) == pytest.approx(bits), text


@pytest.mark.parametrize(
    "text",
    ["int5:g128", "int4", "int4:g100", "int4:g128:sym", "int4:gx", "nf4", "nf4:g64:asym", "int8:g32",
     "fp8:e5m2", "2:4+2:4", "2:4+", "2:4x", "fp16:", "", "float"],
)
def test_malformed_strings_are_refused_with_the_grammar(text):
    with pytest.raises(FormatError) as info:
        parse_format(text)
    message = str(info.value)
    assert repr(text) in message and format_grammar() in message and "\n" not in message


def test_duplicate_format_name_is_an_error():
    with pytest.raises(TypeError, match="already registered"):
        class Again(Int4, name="int4"):
            pass


def test_fp8_decoding_matches_torch_on_all_256_codes():
    torch = pytest.importorskip("torch")
    codes = np.arange(256, dtype=np.uint8)
    ours = e4m3fn_to_float32(codes)
    theirs = torch.from_numpy(codes).view(torch.float8_e4m3fn).float().numpy()
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    ok = ~np.isnan(ours)
    np.testing.assert_array_equal(ours[ok].view(np.uint32), theirs[ok].view(np.uint32))


def test_fp8_encoding_matches_torch_bit_for_bit():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    every_value = e4m3fn_to_float32(np.arange(256, dtype=np.uint8))
    midpoints = (np.sort(every_value[~np.isnan(every_value)])[1:] + np.sort(every_value[~np.isnan(every_value)])[:-1]) / 2
    saturating = np.array([447.9, 448.0, 449.0, 464.0, 479.9, 480.0, 1e6, np.inf, -np.inf, -500.0, np.nan], np.float32)
    x = np.concatenate([
        every_value[~np.isnan(every_value)], midpoints, saturating,
        rng.standard_normal(20000).astype(np.float32) * 100, rng.standard_normal(5000).astype(np.float32) * 1e-3,
        np.array([0.0, -0.0, 2.0**-10, 3 * 2.0**-11, 2.0**-12], np.float32),
    ]).astype(np.float32)
    theirs = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    np.testing.assert_array_equal(float32_to_e4m3fn(x), theirs)
    # an array spanning several encoding chunks, transposed (not contiguous)
    from edgec.core.formats.fp8 import ENCODE_CHUNK

    big = np.resize(x, (3, ENCODE_CHUNK // 2 + 7)).T
    theirs = torch.from_numpy(np.ascontiguousarray(big)).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    np.testing.assert_array_equal(float32_to_e4m3fn(big), theirs)


def test_bf16_matches_torch_bit_for_bit():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000),
                        [0.0, -0.0, 1 + 2**-8, 1 + 3 * 2**-8]]).astype(np.float32)
    ours = parse_format("bf16").quantize(x.reshape(1, -1))["values"].ravel()
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)


def test_nf4_codebook_is_the_published_one():
    published = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230731010437, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]
    np.testing.assert_array_equal(NF4_CODEBOOK, np.array(published, np.float32))


def test_nf4_picks_the_nearest_code():
    fmt = parse_format("nf4:g32")
    w = np.linspace(-1, 1, 32 * 5, dtype=np.float32).reshape(5, 32)
    enc = fmt.encode(w)
    normalized = w / enc["scale"].astype(np.float32)
    nearest = np.abs(normalized[..., None] - NF4_CODEBOOK).argmin(axis=-1)
    np.testing.assert_array_equal(enc["codes"], nearest)


@pytest.mark.parametrize("fmt", [f for f in ALL_FORMATS if f.is_sparse], ids=str)
def test_2to4_keeps_exactly_two_of_every_four_largest(fmt):
    w = _weights((16, 128), seed=3)
    enc = fmt.encode(w)
    idx = enc["indices"]
    assert idx.shape == (16, 32, 2) and (idx[:, :, 0] < idx[:, :, 1]).all() and idx.max() <= 3
    mask = np.zeros((16, 32, 4), bool)
    np.put_along_axis(mask, idx.astype(np.int64), True, axis=2)
    groups = np.abs(w).reshape(16, 32, 4)
    assert (mask.sum(axis=2) == 2).all()
    assert (groups[mask].reshape(16, 32, 2).min(axis=2) >= groups[~mask].reshape(16, 32, 2).max(axis=2)).all()
    deq = fmt.decode(enc, w.shape).reshape(16, 32, 4)
    assert (deq[~mask] == 0).all()


def test_2to4_refuses_input_dimension_not_divisible_by_four():
    with pytest.raises(FormatError, match=r"divisible by 4.*\(3, 10\)"):
        Sparse24().quantize(np.ones((3, 10), np.float32))


def test_refuses_non_matrix_weights():
    with pytest.raises(FormatError, match="2-D"):
        parse_format("int8").quantize(np.ones(10, np.float32))


def test_symmetric_int4_uses_all_sixteen_levels_and_asym_reaches_the_extremes():
    w = np.linspace(-1, 1, 128, dtype=np.float32).reshape(1, 128)
    sym = parse_format("int4:g128").encode(w)["codes"]
    assert set(np.unique(sym)) == set(range(-8, 8))
    asym = parse_format("int4:g128:asym").encode(w)
    assert asym["codes"].min() == 0 and asym["codes"].max() == 15
    assert asym["min"][0, 0] == np.float16(-1.0)


def test_asym_int4_g32_reproduces_a_q4_1_grid_exactly():
    """Weights already on a Q4_1 grid (fp16 d and m, codes 0..15 per 32) come back unchanged."""
    rng = np.random.default_rng(0)
    d = (rng.uniform(0.001, 0.01, (6, 4))).astype(np.float16)
    m = (-rng.uniform(0.01, 0.1, (6, 4))).astype(np.float16)
    q = rng.integers(0, 16, (6, 4, 32))
    q[:, :, 0], q[:, :, 1] = 0, 15
    w = (q * d[..., None].astype(np.float32) + m[..., None].astype(np.float32)).reshape(6, 128)
    fmt = parse_format("int4:g32:asym")
    np.testing.assert_array_equal(fmt.fake_quantize(w), w)


GROUP_QUANTIZED = [f for f in ALL_FORMATS if isinstance(f, GroupQuantizedFormat)]


@pytest.mark.parametrize("fmt", GROUP_QUANTIZED, ids=str)
def test_column_by_column_quantization_equals_round_to_nearest(fmt):
    """fit/round/scale applied one column at a time (as GPTQ does) give encode's exact codes."""
    w = _weights((6, 96), seed=4)
    enc = fmt.encode(w)
    g = fmt.group_size(96)
    for col in range(96):
        start = col - col % g
        params = fmt.fit(w[:, start : start + g])
        codes = fmt.round(w[:, col : col + 1], {p: v[:, None] for p, v in params.items()})
        np.testing.assert_array_equal(codes[:, 0], enc["codes"][:, col])
        np.testing.assert_array_equal(fmt.scale(codes, {p: v[:, None] for p, v in params.items()})[:, 0],
                                      fmt.decode(enc, w.shape)[:, col])


@pytest.mark.parametrize("fmt", GROUP_QUANTIZED, ids=str)
def test_group_parameters_depend_only_on_the_group_extremes(fmt):
    """The clip search fits [r·min, r·max] ranges instead of clipped groups: that needs this contract."""
    groups = _weights((6, 96), seed=5).reshape(6, 3, 32)
    extremes = np.stack([groups.min(-1), groups.max(-1)], axis=-1)
    for r in (1.0, 0.7):
        clipped = np.clip(groups, groups.min(-1, keepdims=True) * r, groups.max(-1, keepdims=True) * r)
        full, from_range = fmt.fit(clipped), fmt.fit(extremes * r)
        assert full.keys() == from_range.keys()
        for p in full:
            np.testing.assert_array_equal(full[p], from_range[p])
