"""The bridge program: detection events from Kafka to Temporal (admission, significance, incident
starts, dead letters)."""
