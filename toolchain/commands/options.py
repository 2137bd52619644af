"""Options shared by every `edgec` verb, so each is spelled and documented once."""

from __future__ import annotations

import math

import click

from edgec.models.embedded import DEFAULT_MODEL, EMBEDDED

model_option = click.option(
    "--model", "-m", default=None, metavar="MODEL",
    help=f"Model folder, .gguf file, or embedded model ({', '.join(EMBEDDED)}); default: {DEFAULT_MODEL}.",
)
format_option = click.option(
    "--format", "-f", "fmt", default=None, metavar="FORMAT",
    help="Weight format, e.g. int8, fp8, int4:g128, int4:g32:asym, nf4:g64, 2:4, 2:4+int4:g128.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
compute_device_option = click.option(
    "--compute-device", default="auto", show_default=True, metavar="DEVICE",
    help="Where calibration, passes and sensitivity compute: auto (a GPU when torch sees one), cpu, cuda or cuda:N. "
         "Weights stay in host memory; blocks move to the device one at a time.",
)
output_option = click.option("--output", "-o", required=True, type=click.Path(), metavar="PATH",
                             help="Where to write the result (must not exist yet).")


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and infinities (every comparison with nan is false,
    so FloatRange alone lets `--latency-ms nan` through to the work)."""

    name = "finite float range"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)
