"""`python -m edgec` runs the CLI."""

from edgec.cli import main

main()
