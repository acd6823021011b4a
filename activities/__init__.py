"""riskflow activities."""
