"""`edgec plan` on the default model (marked slow): a memory budget changes the plan, and the plan fits it.

Kept short for CI: RTN candidates (no GPTQ sweeps) and few calibration windows.
"""

import json

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow
QUICK = ("--methods", "rtn", "--samples", "2", "--loss-samples", "1")


def test_pi5_memory_budget_picks_a_smaller_plan_than_the_default(tmp_path):
    default, budget = tmp_path / "default.json", tmp_path / "budget.json"
    done = run_cli("plan", "--device", "raspberry-pi-5", *QUICK, "-o", str(default))
    assert done.returncode == 0, done.stderr
    assert "lm_head" in done.stdout and "predicted kl" in done.stdout and (tmp_path / "default.png").is_file()
    done = run_cli("plan", "--device", "raspberry-pi-5", "--memory", "80MB", *QUICK, "-o", str(budget))
    assert done.returncode == 0, done.stderr
    assert "0 read from the cache" not in done.stdout  # the second plan reads the first one's measurements
    plan_default, plan_budget = json.loads(default.read_text()), json.loads(budget.read_text())
    assert plan_budget["totals"]["weights_bytes"] <= 80e6 < plan_default["totals"]["weights_bytes"]
    assert plan_budget["layers"] != plan_default["layers"]
    assert "(limit 80.0 MB)" in done.stdout
    done = run_cli("plan", "--device", "raspberry-pi-5", "--memory", "20MB", *QUICK, "-o", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "smallest possible is" in done.stderr and not (tmp_path / "x.json").exists()
