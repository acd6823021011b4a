"""A local DashScope-compatible server for tests and the demo (deterministic, fault-injectable)."""
