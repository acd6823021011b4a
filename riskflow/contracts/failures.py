"""The kinds of LLM-call failure the assessment workflow reacts to.

Each is the `type` of the `temporalio.exceptions.ApplicationError` an LLM activity raises;
which provider answer maps to which kind is the providers' business (`activities.providers`).
"""

from __future__ import annotations

OK = "Ok"
RATE_LIMITED = "RateLimited"  # 429: the key (or its whole quota group) cools down; no attempt spent
PROVIDER_ERROR = "ProviderError"  # 5xx, timeouts, connection errors: back off, retry
INVALID_KEY = "InvalidKey"  # 401/InvalidApiKey: this one key is disabled, another key is tried
ACCOUNT_REFUSED = "AccountRefused"  # Arrearage...: every key of the account (quota group) disabled
CONFIGURATION_ERROR = "ConfigurationError"  # model or parameters the endpoint refuses: fail fast
CONTENT_REJECTED = "ContentRejected"  # DataInspectionFailed: without history, then text-only
IMAGE_UNAVAILABLE = "ImageUnavailable"  # the provider could not fetch/decode the image: text-only
BAD_REQUEST = "BadRequest"  # any other 4xx: the request itself is refused; fails with the reason
MALFORMED_ANSWER = "MalformedAnswer"  # not the JSON asked for: repair prompt, bounded
KEY_BUSY = "KeyBusy"  # the leased key had no send slot in time: lease again
LEASE_LOST = "LeaseLost"  # the lease expired, was too short, or its key was disabled: lease again
KEY_UNAVAILABLE = "KeyUnavailable"  # this worker has no secret for the key: lease again

NON_RETRYABLE = (CONTENT_REJECTED, MALFORMED_ANSWER, CONFIGURATION_ERROR, BAD_REQUEST)
# Nothing about the event was at fault: the workflow leases again without spending an attempt.
NOT_AN_ATTEMPT = (KEY_BUSY, LEASE_LOST, KEY_UNAVAILABLE, RATE_LIMITED, ACCOUNT_REFUSED)
