"""The README's quick start and CLI reference stay true to the code."""

import re
from pathlib import Path

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    section = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = _quick_start_commands()
    assert install_and_run.startswith("pip install torch==2.13.0 ") and install_and_run.endswith("edgec plan --device rtx4090")
    assert install_and_test.endswith("python -m pytest")
    ci_lines = ROOT.joinpath(".ci/run").read_text().splitlines()
    assert install_and_test in ci_lines


def test_version_and_help():
    from edgec.core.version import __version__

    done = run_cli("--version")
    assert done.returncode == 0 and __version__ in done.stdout
    assert "eval" in run_cli("--help").stdout
    assert "--format" in run_cli("eval", "--help").stdout


def test_readme_documents_every_option_of_every_command():
    readme = ROOT.joinpath("README.md").read_text()
    commands = re.findall(r"^  (\w+) ", run_cli("--help").stdout.split("Commands:")[1], flags=re.M)
    assert {"eval", "compress", "plan", "devices", "profile"} <= set(commands)
    for command in commands:
        assert f"edgec {command}" in readme, command
        for option in re.findall(r"(--[a-z-]+)", run_cli(command, "--help").stdout):
            if option != "--help":
                assert option in readme, f"{command} {option}"
