"""Signals per incident stay bounded: the bridge's pure rule for leaving a frame out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.bridge.incident_starts import Signalled, left_out

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def at(seconds: float, severity: int = 2) -> Signalled:
    return Signalled(T0 + timedelta(seconds=seconds), severity)


def test_one_frame_a_second_and_never_a_worse_one_left_out() -> None:
    assert not left_out(None, at(0), SECOND)  # the first frame always goes
    assert left_out(at(0), at(0.5), SECOND)
    assert not left_out(at(0), at(1.0), SECOND)  # a second later: the newest goes
    assert not left_out(at(0), at(0.5, severity=5), SECOND)  # a fall in a crowd goes at once
    assert left_out(at(0, severity=5), at(0.2, severity=2), SECOND)
    assert not left_out(at(10), at(3), SECOND)  # an older frame (redelivered, out of order)
    assert not left_out(at(0), at(0.1), timedelta(0))  # 0: every frame


def test_a_backlog_after_a_stall_costs_one_signal_a_second() -> None:
    last: Signalled | None = None
    sent = 0
    for n in range(8 * 600):  # ten minutes of an 8 fps scene, delivered at once
        frame = at(n / 8)
        if not left_out(last, frame, SECOND):
            last, sent = frame, sent + 1
    assert sent == 600
