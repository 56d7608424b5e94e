"""A user's allowance of new jobs per minute (triggers/quota.py), and the failure it writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jobs as trigger_jobs  # triggers/ is on the path (pyproject: pytest pythonpath)
import pytest
import quota

from flows.job import MAX_BATCH_JOBS, ErrorCode, ErrorInfo, JobStatus
from flows.transitions import Transition, plan_update

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def bucket(tokens: float, seconds_ago: float, **extra: Any) -> dict[str, Any]:
    return {"tokens": tokens, "refilledAt": NOW - timedelta(seconds=seconds_ago), **extra}


def test_a_new_user_has_a_whole_minute_to_spend() -> None:
    first = quota.plan_take(None, 1, 120, NOW)
    assert first == quota.Allowance(True, 1, 120, 119.0, 0)


def test_the_bucket_refills_at_the_rate_and_no_further() -> None:
    assert quota.tokens_now(bucket(0, 30), 120, NOW) == 60  # half a minute: half the allowance
    assert quota.tokens_now(bucket(10, 3600), 120, NOW) == 120  # an hour idle: one minute's worth
    # Another instance's clock a little ahead: no refill, never fewer tokens.
    assert quota.tokens_now(bucket(5, -2), 120, NOW) == 5


def test_over_the_allowance_is_refused_with_the_wait_until_it_fits() -> None:
    refused = quota.plan_take(bucket(0.2, 0), 1, 120, NOW)
    assert not refused.granted
    assert refused.wait_seconds == 1  # 0.8 of a token at 2 a second: under a second, said as 1
    assert refused.tokens == pytest.approx(0.2)  # a refusal takes nothing
    later = quota.plan_take(bucket(0.2, 0.5), 1, 120, NOW)
    assert later.granted and later.tokens == pytest.approx(0.2)

    slow = quota.plan_take(bucket(0, 0), 3, 6, NOW)  # 6 a minute: one token every 10 s
    assert (slow.granted, slow.wait_seconds) == (False, 30)


def test_a_full_batch_fits_an_unused_allowance_and_is_repaid() -> None:
    batch = quota.plan_take(None, MAX_BATCH_JOBS, 120, NOW)
    assert batch.granted
    assert batch.tokens == 120 - MAX_BATCH_JOBS  # owed: the average stays 120 a minute
    # The next job waits until the debt is paid and one token is back: 281 tokens at 2 a second.
    after = quota.plan_take({"tokens": batch.tokens, "refilledAt": NOW}, 1, 120, NOW)
    assert (after.granted, after.wait_seconds) == (False, 141)
    # A batch larger than the bucket needs the whole bucket, not a part of it.
    assert not quota.plan_take(bucket(119, 0), MAX_BATCH_JOBS, 120, NOW).granted


def test_nothing_to_start_takes_nothing_even_in_debt() -> None:
    nothing = quota.plan_take(bucket(-50, 0), 0, 120, NOW)
    assert nothing.granted and nothing.tokens == -50


def test_an_operators_allowance_for_one_user_wins_over_the_default() -> None:
    assert quota.jobs_per_minute({"jobsPerMinute": 2}, 120) == 2
    for ignored in (0, -3, "5", 2.5, True, None):
        assert quota.jobs_per_minute({"jobsPerMinute": ignored}, 120) == 120
    assert quota.jobs_per_minute(None, 0) == 1  # a bucket that never refills has no wait to give
    low = quota.plan_take(bucket(0, 0, jobsPerMinute=2), 1, 120, NOW)
    assert (low.granted, low.per_minute, low.wait_seconds) == (False, 2, 30)


def test_the_message_says_the_limit_and_when_to_retry() -> None:
    one = quota.Allowance(False, 1, 120, 0.0, 12)
    assert quota.refusal_message(one) == (
        "You may start 120 new jobs a minute, and this job would go over that. Retry it in 12 s."
    )
    many = quota.refusal_message(quota.Allowance(False, 400, 120, 3.0, 199))
    assert "these 400 jobs" in many and "Retry them in 199 s." in many


# --- the failure the trigger writes: the worker's own failure fields -------------------------


def test_a_rate_limited_job_fails_with_the_fields_the_worker_writes_for_a_failure() -> None:
    error = trigger_jobs.rate_limited(quota.Allowance(False, 1, 120, 0.0, 5))
    assert error["code"] == ErrorCode.RATE_LIMITED and error["retryable"] is True
    pending = {"status": "pending", "retryCount": 0, "history": [{"status": "pending"}]}

    ours = trigger_jobs._failed_fields(pending, 0, error, NOW)
    workers = plan_update(
        "j", pending, Transition(JobStatus.FAILED, 0, error=ErrorInfo(**error)), NOW
    )
    assert ours == workers


@pytest.mark.parametrize(
    "job",
    [
        {"status": "queued", "retryCount": 0},  # another delivery started it meanwhile
        {"status": "cancelled", "retryCount": 0},  # its owner cancelled it
        {"status": "pending", "retryCount": 1},  # another attempt
    ],
)
def test_only_a_still_pending_attempt_is_failed(job: dict[str, Any]) -> None:
    error = {"code": "rate-limited", "message": "m", "retryable": True}
    assert trigger_jobs._failed_fields(job, 0, error, NOW) is None
