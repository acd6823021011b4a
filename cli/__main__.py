"""`python -m cli ...`, the same as the `riskflow` command."""

from cli.app import main

main()
