"""The kinds of LLM-call failure the assessment workflow reacts to.

Each is the `type` of the `temporalio.exceptions.ApplicationError` an LLM activity raises;
which provider answer maps to which kind is the providers' business (`activities.providers`).
"""

from __future__ import annotations

OK = "Ok"
RATE_LIMITED = "RateLimited"  # 429 Throttling.*: wait Retry-After, then another lease
PROVIDER_ERROR = "ProviderError"  # 5xx, timeouts, connection errors: back off, retry
INVALID_KEY = "InvalidKey"  # 401/403: the key is disabled, another key is tried
CONTENT_REJECTED = "ContentRejected"  # 400: retrying the same input cannot help
MALFORMED_ANSWER = "MalformedAnswer"  # not the JSON asked for: repair prompt, bounded
KEY_BUSY = "KeyBusy"  # the leased key had no send slot in time: lease again
LEASE_LOST = "LeaseLost"  # the lease expired or its key was disabled: lease again
KEY_UNAVAILABLE = "KeyUnavailable"  # this worker has no secret for the key: lease again

NON_RETRYABLE = (CONTENT_REJECTED, MALFORMED_ANSWER)
