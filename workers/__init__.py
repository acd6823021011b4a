"""riskflow workers."""
