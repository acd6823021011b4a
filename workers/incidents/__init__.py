"""The incident client: the operator actions and lists the console and the CLI use."""
