"""Builds the optional C extension edgec.kernels._cpu; all other metadata lives in pyproject.toml.

If no C compiler is present, or compiling fails, the install still succeeds without the
extension and `edgec.kernels.cpu.available()` returns False (the numpy reference runs instead).
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CPU_DIR = Path("kernels") / "cpu"
SOURCES = ["edgec_cpu.c", "linear.c", "rows_scalar.c", "rows_avx2.c", "q8.c", "pool.c", "decoder.c", "q8_gemm.c"]
HEADERS = ["storage_kinds.h", "weight.h", "linear.h", "q8.h", "pool.h", "decoder.h", "q8_acts.h", "q8_gemm_body.h"]

# No -march: the AVX2 kernels carry target attributes and are chosen at run time, so the
# binary runs on any CPU of its architecture. No FMA contraction: the exact path rounds
# each dequantization step as numpy does. -Werror=switch: a storage kind missing from a switch
# over enum Kind is a build error (see weight.h).
UNIX_FLAGS = ["-O2", "-std=gnu11", "-ffp-contract=off", "-fno-strict-aliasing", "-fvisibility=hidden", "-pthread",
              "-Werror=switch"]
MSVC_FLAGS = ["/O2", "/fp:precise"]


class BuildExt(build_ext):
    """build_ext with compiler-specific flags."""

    def build_extensions(self) -> None:
        unix = self.compiler.compiler_type in ("unix", "mingw32", "cygwin")
        for ext in self.extensions:
            ext.extra_compile_args = UNIX_FLAGS if unix else MSVC_FLAGS
            ext.extra_link_args = ["-pthread"] if unix else []
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "edgec.kernels._cpu",
            sources=[str(CPU_DIR / s) for s in SOURCES],
            depends=[str(CPU_DIR / h) for h in HEADERS],
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
