"""What the programs share: the Temporal client, its interceptors, and significance rules."""
