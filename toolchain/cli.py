"""The `edgec` command line: a click group; each verb lives in its own module.

Bad input raises `EdgecError` (or click's usage errors, for options click checks); `main` prints it
as one line on stderr and exits 2.
"""

from __future__ import annotations

import signal
import sys

import click

from edgec.core.errors import EdgecError
from edgec.core.version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
def cli() -> None:
    """edgec: plan, compress, export and measure transformers for edge devices."""


def _register_commands() -> None:
    from edgec.commands.bench_command import bench_command
    from edgec.commands.compress_command import compress_command
    from edgec.commands.devices_command import devices_command
    from edgec.commands.eval_command import eval_command
    from edgec.commands.export_command import export_command
    from edgec.commands.inspect_command import inspect_command
    from edgec.commands.plan_command import plan_command
    from edgec.commands.profile_command import profile_command
    from edgec.commands.run_command import run_command

    cli.add_command(eval_command)
    cli.add_command(plan_command)
    cli.add_command(compress_command)
    cli.add_command(export_command)
    cli.add_command(inspect_command)
    cli.add_command(profile_command)
    cli.add_command(devices_command)
    cli.add_command(run_command)
    cli.add_command(bench_command)


_register_commands()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds (and removes its temporaries) as on Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=argv, prog_name="edgec", standalone_mode=False)
    except EdgecError as exc:
        click.echo(f"edgec: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, Terminated):
            click.echo("edgec: terminated", err=True)
            sys.exit(128 + signal.SIGTERM)
        click.echo("edgec: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # the help text, as `edgec` alone asks for
        sys.exit(exc.exit_code)
    except click.UsageError as exc:  # a bad option or value: one line, as for any other bad input
        command = exc.ctx.command_path if exc.ctx is not None else "edgec"
        click.echo(f"edgec: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
