"""riskflow: camera detections to durable, rate-limited LLM risk assessments."""

__version__ = "0.1.0"
