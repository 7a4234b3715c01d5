"""`python -m coldaisle` is the `coldaisle` command."""

from coldaisle.cli import main

main()
