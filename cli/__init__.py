"""Entry points: the `riskflow` typer app and one thin module per command group."""
