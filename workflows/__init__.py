"""riskflow workflows."""
