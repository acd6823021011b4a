"""The local notification receiver (dev tooling): vendor-shaped HTTP endpoints that verify each
vendor's documented payload format and signature, an SMTP server with STARTTLS, and a record of
everything that arrived (`GET /admin/notifications`)."""
