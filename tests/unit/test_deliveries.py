"""The delivery run's own logic: one run per 10-second window, and a drain that outlasts it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows import deliveries
from flows.deliveries import IDLE_SECONDS, MAX_RUN_SECONDS, WINDOW_SECONDS, delivery_run_key

AT = datetime(2026, 12, 5, 2, 10, 3, tzinfo=UTC)


def test_announcements_of_one_window_ask_for_one_run() -> None:
    key = delivery_run_key(AT)
    assert key == "deliver-webhooks@2026-12-05T02:10:00Z"
    assert delivery_run_key(AT + timedelta(seconds=6.9)) == key
    assert delivery_run_key(AT + timedelta(seconds=7)) != key  # 02:10:10: the next window
    assert delivery_run_key(AT - timedelta(seconds=3.1)) != key


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_the_drain_outlasts_its_window_and_takes_late_work() -> None:
    clock = Clock()
    # Work arrives at 0 s and again 9 s later, late in the run's window.
    arrivals = {0.0: {"delivered": 2}, 9.0: {"retrying": 1}}
    passes: list[float] = []

    def deliver(now: datetime) -> dict[str, int]:
        passes.append(clock.t)
        return arrivals.pop(clock.t, {})

    counts = deliveries.drain(deliver=deliver, store=None, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert counts == {"delivered": 2, "retrying": 1}
    # Having found work at 9 s, it looks for IDLE_SECONDS more, well past the window's end.
    assert IDLE_SECONDS > WINDOW_SECONDS
    assert passes[-1] >= 9.0 + IDLE_SECONDS - 1


def test_a_steady_stream_ends_the_run_after_its_longest_time() -> None:
    clock = Clock()

    def deliver(now: datetime) -> dict[str, int]:
        clock.t += 0.5
        return {"delivered": 1}

    counts = deliveries.drain(deliver=deliver, store=None, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    assert clock.t == pytest.approx(MAX_RUN_SECONDS, abs=0.5)
    assert counts["delivered"] == pytest.approx(MAX_RUN_SECONDS / 0.5, abs=1)


def test_a_job_that_did_not_end_announces_nothing() -> None:
    # Neither Firestore nor Prefect is asked: the status alone says there is no event.
    assert deliveries.announce_job(None, "job-1", {"status": "cancelled", "userId": "u"}) == []  # type: ignore[arg-type]
    assert deliveries.announce_job(None, "job-1", {"status": "generating-video"}) == []  # type: ignore[arg-type]
