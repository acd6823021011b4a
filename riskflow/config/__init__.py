"""Settings: the root `Settings`, the loader, and one small module per section of the YAML files."""
