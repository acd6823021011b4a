"""Connections to the outside: Kafka, Redis, telemetry, metrics, service endpoints, process ids and
shutdown."""
