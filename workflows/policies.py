"""Retry policies and bounds of the workflows, in one place (pure: no I/O)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Redis and Kafka: retried until they answer (a 30 s outage is waited out, nothing is lost).
INFRA_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# One LLM attempt per lease: the assessment loop decides what follows a failed one.
SINGLE_ATTEMPT = RetryPolicy(maximum_attempts=1)
# Runs started before the ALARM_FIRST patch (workflows/incident_state.py) only: a channel that
# keeps failing is retried for about an hour, then recorded as failed: the incident goes on
# (the next level may reach somebody). Later runs send with NOTIFY_SEND_RETRY, beside the loop.
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=70,
)

MAX_BACKOFF = 60.0  # seconds between two failed LLM attempts, at most
MAX_UNSENT_ROUNDS = 50  # leases that sent nothing, 429s and refused accounts, per event
KEY_WAIT_JITTER = 0.2  # each wait for a key is stretched by up to this share, at random
# A channel's send beside the incident's loop (`workflows.incident_state`): about ten minutes
# of a channel answering errors (a vendor's Retry-After or block time is honoured through the
# activity's `next_retry_delay`), then it is recorded as failed and a fallback channel is used.
# ... and at most this long after its first attempt, however often the incident continues as
# new meanwhile (a message still trying is carried into the next run with the time it spent).
NOTIFY_SEND_GIVE_UP = timedelta(minutes=30)
NOTIFY_SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=15,
)

# A click on an incident card (`workflows.card_click`): its update tried while Temporal or
# Redis is away, for an hour at most; then the card is updated, a few times while the vendor
# is busy (a click's response code works once: a repeat of an update that landed changes
# nothing).
CARD_CLICK_GIVE_UP = timedelta(hours=1)
CARD_CLICK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["CardClickRejected"],
)
CARD_TELL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=["NotificationRejected"],
)
