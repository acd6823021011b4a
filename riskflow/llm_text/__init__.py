"""The LLM's text: the prompt asked, and the reading of the answer (pure, no I/O)."""
