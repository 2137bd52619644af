"""Bad option values are refused with one `edgec: error:` line naming the option, exit 2, before any work."""

from __future__ import annotations

import pytest
from conftest import run_cli

CASES = [
    (["run", "m.edgec", "-p", "hi", "--temperature", "nan"], "--temperature"),
    (["run", "m.edgec", "-p", "hi", "--temperature", "inf"], "--temperature"),
    (["run", "m.edgec", "-p", "hi", "--top-p", "nan"], "--top-p"),
    (["run", "m.edgec", "-p", "hi", "--seed", "-1"], "--seed"),
    (["run", "m.edgec", "-p", "hi", "--stop", ""], "--stop"),
    (["run", "m.edgec"], "--prompt"),
    (["plan", "--device", "rtx4090", "--latency-ms", "nan"], "--latency-ms"),
    (["plan", "--device", "rtx4090", "--max-loss", "nan"], "--max-loss"),
    (["plan", "--device", "rtx4090", "--avg-bits", "99"], "--avg-bits"),
    (["plan", "--device", "rtx4090", "--memory", "1e400MB"], "--memory"),
    (["plan", "--device", "rtx4090", "--memory", "nan"], "--memory"),
    (["compress", "--format", "int4:g32", "--method", "wanda", "--sparsity", "nan", "-o", "x"], "--sparsity"),
    (["compress", "--format", "int4:g32", "--method", "gptq", "--damp", "inf", "-o", "x"], "--damp"),
    (["compress", "--format", "int4:g32", "--method", "bogus", "-o", "x"], "--method"),
    (["eval", "--format"], "--format"),
    (["no-such-verb"], "no-such-verb"),
]


@pytest.mark.parametrize(("args", "named"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_values_get_one_line_naming_the_option(tmp_path, args, named):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgec: error: ") and named in lines[0], done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_edgec_alone_still_prints_its_help():
    done = run_cli()
    assert "Commands:" in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_method_choices_are_the_registered_passes():
    from edgec.passes import PASSES

    done = run_cli("compress", "--help")
    assert "[" + "|".join(PASSES) + "]" in done.stdout.replace("\n", "").replace(" ", ""), done.stdout
