"""The embedded local stack: real servers from pip-installed binaries, on loopback."""
