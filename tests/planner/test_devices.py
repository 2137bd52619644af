"""The shipped device profiles, the schema's refusals, and `edgec devices`."""

import copy
import json
import math

import pytest
import yaml
from conftest import cli_json, run_cli

from edgec.core.errors import EdgecError
from edgec.core.formats import parse_format
from edgec.devices import PROFILE_DIR
from edgec.planner.latency import Roofline
from edgec.planner.profiles import DeviceProfile, load_profile, shipped_profiles, validate_profile

SHIPPED = ("rtx4090", "rtx3060-laptop", "a100", "h100", "jetson-orin-nano", "apple-m2-gpu", "apple-m2-cpu",
           "raspberry-pi-5", "snapdragon-8-gen3-cpu", "x86-avx2-laptop")
SPARSE_TENSOR_CORES = {"rtx4090", "rtx3060-laptop", "a100", "h100", "jetson-orin-nano"}
FP8_NATIVE = {"rtx4090", "h100"}
NVIDIA = SPARSE_TENSOR_CORES
MAX_FORMATS = 9
SHAPE = (576, 576)


def _raw(name: str = "rtx4090") -> dict:
    """A shipped profile as the plain mapping its YAML holds (the loader's own YAML rules)."""
    from edgec.planner.profiles import _ProfileLoader

    return yaml.load((PROFILE_DIR / f"{name}.yaml").read_text(), Loader=_ProfileLoader)


@pytest.fixture(scope="module")
def profiles() -> dict[str, DeviceProfile]:
    return {name: load_profile(name) for name in SHIPPED}


# --- the shipped profiles -------------------------------------------------------------------------------------


def test_the_ten_profiles_ship_under_their_own_names():
    assert set(SHIPPED) <= set(shipped_profiles())
    for name in SHIPPED:
        assert load_profile(name).name == name
        assert load_profile(PROFILE_DIR / f"{name}.yaml").name == name  # by path too


@pytest.mark.parametrize("name", SHIPPED)
def test_every_figure_has_a_source(profiles, name):
    p = profiles[name]
    figures = {"memory_bytes", "usable_memory_fraction", "bandwidth_gbs", "peak_tops", "dispatch_us", "formats"}
    if p.sparse24_speedup > 1:
        figures.add("sparse24_speedup")
    assert figures <= set(p.sources), f"{name}: no source for {figures - set(p.sources)}"
    assert set(p.sources) <= set(DeviceProfile.model_fields), f"{name}: a source names no field"
    for field, text in p.sources.items():
        said = text.lower()
        # a citation (URL) or an honest label for what is not a data-sheet figure
        assert "http" in said or any(w in said for w in ("estimate", "computed", "judgement")), (name, field)
    for compute in p.peak_tops:  # every peak the profile claims is named in its source
        assert compute.upper() in p.sources["peak_tops"].upper(), (name, compute)


@pytest.mark.parametrize("name", SHIPPED)
def test_format_lists_follow_the_hardware(profiles, name):
    p = profiles[name]
    assert 1 <= len(p.formats) <= MAX_FORMATS
    assert "int4:g32:asym" not in p.formats
    sparse = [f for f in p.formats if parse_format(f).is_sparse]
    if name in SPARSE_TENSOR_CORES:
        assert p.sparse24_speedup > 1 and sparse
    else:
        assert p.sparse24_speedup == 1 and not sparse
    fp8 = p.formats.get("fp8")
    assert (fp8 is not None and fp8.native) == (name in FP8_NATIVE)
    if any(f.startswith("nf4") for f in p.formats):
        assert name in NVIDIA
    for text, path in p.formats.items():
        if text.startswith(("int4", "int3", "nf4")):
            assert not path.native, (name, text)  # group formats dequantize to a float type
        if p.kind == "cpu" and not path.native:
            assert path.compute in ("fp32", "fp16"), (name, text)


@pytest.mark.parametrize("name", SHIPPED)
def test_roofline_gives_a_finite_latency_for_every_format(profiles, name):
    p = profiles[name]
    roofline = Roofline(p)
    for text in p.formats:
        fmt = parse_format(text)
        assert str(fmt) == text
        for tokens in (1, 512):
            seconds = roofline.seconds(fmt, *SHAPE, tokens)
            assert math.isfinite(seconds) and seconds > 0, (name, text, tokens)
            assert seconds >= p.dispatch_us * 1e-6


def test_bandwidth_ordering(profiles):
    chain = ["h100", "a100", "rtx4090", "rtx3060-laptop", "jetson-orin-nano", "raspberry-pi-5"]
    bandwidths = [profiles[n].bandwidth_gbs for n in chain]
    assert bandwidths == sorted(bandwidths, reverse=True) and len(set(bandwidths)) == len(chain), \
        dict(zip(chain, bandwidths))


def test_fp16_throughput_ordering(profiles):
    chain = ["h100", "a100", "rtx4090", "rtx3060-laptop", "jetson-orin-nano"]
    peaks = [profiles[n].peak_tops["fp16"] for n in chain]
    assert peaks == sorted(peaks, reverse=True), dict(zip(chain, peaks))
    for name, p in profiles.items():  # int8 tensor cores / dot products are never slower than the float path
        if "int8" in p.formats and p.formats["int8"].native:
            floats = [p.peak_tops[c] for c in ("fp16", "fp32") if c in p.peak_tops]
            assert p.peak_tops["int8"] >= max(floats), name


@pytest.mark.parametrize("name", SHIPPED)
def test_decode_is_bandwidth_bound_so_int4_beats_fp16(profiles, name):
    p = profiles[name]
    roofline = Roofline(p)
    fp16 = roofline.seconds(parse_format("fp16"), *SHAPE, 1)
    int4 = roofline.seconds(parse_format("int4:g128"), *SHAPE, 1)
    assert int4 < fp16, (name, int4, fp16)


def test_usable_memory_is_a_share_of_memory(profiles):
    for name, p in profiles.items():
        assert 0.4 <= p.usable_memory_fraction <= 0.95, name
        assert p.usable_bytes < p.memory_bytes
    assert profiles["rtx4090"].memory_bytes == 24 * 2**30
    assert profiles["h100"].memory_bytes == profiles["a100"].memory_bytes == 80 * 2**30


# --- refusals -----------------------------------------------------------------------------------------------------


def _refused(data: dict) -> str:
    with pytest.raises(EdgecError) as caught:
        validate_profile(data, "test.yaml")
    message = str(caught.value)
    assert message.startswith("test.yaml: ") and "\n" not in message
    return message


def test_the_raw_mapping_validates():
    assert validate_profile(_raw()).name == "rtx4090"


def test_unknown_field_is_refused():
    data = _raw() | {"boost_clock_mhz": 2520}
    assert "boost_clock_mhz" in _refused(data)


def test_missing_source_is_refused():
    data = _raw()
    del data["sources"]["bandwidth_gbs"]
    message = _refused(data)
    assert "sources" in message and "bandwidth_gbs" in message
    data = _raw()
    data["sources"]["sparse24_speedup"] = "   "
    assert "sparse24_speedup" in _refused(data)


def test_negative_bandwidth_is_refused():
    assert "bandwidth_gbs" in _refused(_raw() | {"bandwidth_gbs": -1008})
    data = _raw()
    data["peak_tops"] = data["peak_tops"] | {"int8": -1}
    assert "peak_tops" in _refused(data)


def test_unknown_format_string_is_refused():
    data = _raw()
    data["formats"] = data["formats"] | {"int5:g128": {"native": False, "compute": "fp16"}}
    message = _refused(data)
    assert "formats" in message and "int5:g128" in message


def test_native_int4_computing_in_fp16_is_refused():
    data = _raw()
    data["formats"] = data["formats"] | {"int4:g128": {"native": True, "compute": "fp16"}}
    message = _refused(data)
    assert "formats" in message and "int4:g128" in message


def test_a_compute_without_a_peak_is_refused():
    data = _raw("raspberry-pi-5")
    data["formats"] = data["formats"] | {"bf16": {"native": True, "compute": "bf16"}}
    message = _refused(data)
    assert "formats.bf16" in message and "peak_tops" in message


def test_unquoted_2_4_key_reads_as_the_format(tmp_path):
    text = (PROFILE_DIR / "rtx4090.yaml").read_text()
    assert '"2:4":' in text
    path = tmp_path / "rtx4090.yaml"  # a profile file is named as its profile
    path.write_text(text.replace('"2:4":', "2:4:"))
    assert "2:4" in load_profile(path).formats  # not the YAML 1.1 base-60 integer 124
    # read by a plain YAML 1.1 loader the key becomes 124, and the schema names the field
    data = yaml.safe_load(path.read_text())
    assert 124 in data["formats"]
    assert "formats.124" in _refused(data)


def test_sizes_parse_with_units():
    assert validate_profile(_raw() | {"memory_bytes": "8GB"}).memory_bytes == 8 * 10**9
    assert validate_profile(_raw() | {"memory_bytes": "8GiB"}).memory_bytes == 8 * 2**30
    assert validate_profile(_raw() | {"memory_bytes": 8_000_000_000}).memory_bytes == 8 * 10**9
    assert "memory_bytes" in _refused(_raw() | {"memory_bytes": "8 gigs"})
    assert "memory_bytes" in _refused(_raw() | {"memory_bytes": "-8GB"})


def test_wrong_path_and_unknown_name_are_refused(tmp_path):
    with pytest.raises(EdgecError, match="no such device profile file"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(EdgecError, match=r"unknown device 'nope'.*rtx4090"):
        load_profile("nope")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(EdgecError, match="mapping"):
        load_profile(bad)


def test_a_format_the_device_cannot_run_names_both():
    with pytest.raises(EdgecError, match=r"raspberry-pi-5.*nf4:g64"):
        load_profile("raspberry-pi-5").path(parse_format("nf4:g64"))


# --- the CLI ------------------------------------------------------------------------------------------------------


def test_cli_lists_every_shipped_device():
    done = run_cli("devices")
    assert done.returncode == 0, done.stderr
    for name in SHIPPED:
        assert name in done.stdout
    listed = cli_json("devices")["devices"]
    assert {d["name"] for d in listed} >= set(SHIPPED)


def test_cli_shows_one_device_as_json():
    data = cli_json("devices", "rtx4090")
    assert data["name"] == "rtx4090" and data["memory_bytes"] == 24 * 2**30
    assert data["usable_bytes"] == int(24 * 2**30 * 0.9)
    assert data["formats"]["fp8"] == {"compute": "fp8", "native": True}
    assert data["digest"] == load_profile("rtx4090").digest()


def test_cli_shows_a_yaml_file_readably(tmp_path):
    done = run_cli("devices", str(PROFILE_DIR / "jetson-orin-nano.yaml"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "68 GB/s" in out and "8 GiB" in out and "TOPS" in out
    assert "2:4+int4:g128   dequantized, computes in fp16" in out
    assert "bandwidth_gbs:" in out  # sources are printed
    bad = tmp_path / "bad.yaml"
    data = _raw()
    data["bandwidth_gbs"] = -1
    bad.write_text(json.dumps(data))  # JSON is YAML
    done = run_cli("devices", str(bad))
    assert done.returncode == 2 and "bandwidth_gbs" in done.stderr


def test_cli_unknown_device_is_one_line():
    done = run_cli("devices", "nope")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("edgec: error:") and "'nope'" in done.stderr


def test_profiles_do_not_mutate(profiles):
    before = copy.deepcopy(profiles["a100"].model_dump())
    Roofline(profiles["a100"]).seconds(parse_format("2:4"), *SHAPE, 512)
    assert profiles["a100"].model_dump() == before


@pytest.mark.parametrize(("line", "message"), [
    ("bandwith_gbs: 1008", "field bandwith_gbs: unknown field; did you mean 'bandwidth_gbs'?"),
    ("bandwidth_gbs: yes", "field bandwidth_gbs: Input should be a valid number"),
    ("bandwidth_gbs: .inf", "field bandwidth_gbs: Input should be a finite number"),
    ("bandwidth_gbs: .nan", "field bandwidth_gbs: Input should be a finite number"),
    ("dispatch_us: true", "field dispatch_us"),
])
def test_profile_values_yaml_reads_loosely_are_refused(tmp_path, line, message):
    path = tmp_path / "rtx4090.yaml"
    field = line.split(":")[0].replace("bandwith", "bandwidth")
    text = (PROFILE_DIR / "rtx4090.yaml").read_text()
    path.write_text("\n".join(line if ln.startswith(f"{field}:") else ln for ln in text.splitlines()))
    with pytest.raises(EdgecError) as info:
        load_profile(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_a_profile_named_unlike_its_file_is_refused(tmp_path):
    path = tmp_path / "my-gpu.yaml"
    path.write_text((PROFILE_DIR / "rtx4090.yaml").read_text())
    with pytest.raises(EdgecError, match="field name: 'rtx4090' must be the file's name without .yaml .'my-gpu'."):
        load_profile(path)
