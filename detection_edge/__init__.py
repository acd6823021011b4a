"""riskflow detection_edge."""
