"""Which listed jobs a batch's flow run takes (flows/batch.py), without the stack."""

from __future__ import annotations

from typing import Any

from flows.batch import batch_jobs

BATCH = "b-1"


def job(**overrides: Any) -> dict[str, Any]:
    return {"userId": "u", "batchId": BATCH, "retryCount": 0, "status": "pending", **overrides}


def test_takes_the_owners_waiting_jobs_in_the_listed_order() -> None:
    batch = {"userId": "u", "jobIds": ["c", "a", "b"]}
    jobs = {"a": job(), "b": job(status="queued", flowRunId="run-1"), "c": job()}
    assert batch_jobs(batch, BATCH, jobs, "run-1") == ["c", "a", "b"]


def test_skips_what_is_not_this_batchs_to_take() -> None:
    batch = {
        "userId": "u",
        "jobIds": [
            "other-user",
            "other-batch",
            "retried",
            "started",
            "done",
            "elsewhere",
            "missing",
            7,
            "ok",
            "ok",
        ],
    }
    jobs: dict[str, dict[str, Any] | None] = {
        "other-user": job(userId="someone-else"),
        "other-batch": job(batchId="b-2"),
        "retried": job(retryCount=1),
        "started": job(status="validating-input"),
        "done": job(status="cancelled"),
        "elsewhere": job(status="queued", flowRunId="the-sweeps-run"),
        "missing": None,
        "ok": job(),
    }
    assert batch_jobs(batch, BATCH, jobs, "run-1") == ["ok"]


def test_a_batch_without_jobs_takes_nothing() -> None:
    assert batch_jobs({}, BATCH, {}, "run-1") == []
