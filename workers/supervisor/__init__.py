"""The supervisor program: `riskflow up/down/status`, the services under supervisord."""
