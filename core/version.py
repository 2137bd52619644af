"""edgec's version, read from the installed distribution (pyproject.toml is its one source).

`edgec` is a namespace package (see docs/layout.md), so the version lives here rather than in
an `__init__.py`.
"""

from importlib.metadata import version

__version__: str = version("edgec")
