"""`python -m riskflow.cli ...`, the same as the `riskflow` command."""

from riskflow.cli.app import main

main()
