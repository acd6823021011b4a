"""Notification channels: one module per vendor, and `NotifyActivities.notify`, the activity
the incident workflow calls with a `riskflow.notifications.NotificationRequest`."""

from __future__ import annotations

from temporalio import activity

from riskflow.notifications import NotificationRequest, NotificationResult


class NotifyActivities:
    """Sends incident notifications through the configured channels (being built: the
    channel modules and their clients are injected here)."""

    @activity.defn(name="notify")
    async def notify(self, request: NotificationRequest) -> NotificationResult:
        raise NotImplementedError("notification channels are not wired yet")
