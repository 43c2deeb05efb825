"""`python -m aesoperator.cli`: the `aesop` command."""

from aesoperator.cli import main

main()
