"""The retry policy the pipeline's tasks declare: transient failures only, with backoff."""

from __future__ import annotations

from typing import Any

from flows.job import JobError

# Exponential backoff; each task adds jitter (retry_jitter_factor) so retries do not align.
RETRY_DELAYS_S = [2.0, 8.0, 30.0]


def is_retryable(exc: BaseException | None) -> bool:
    """Only what may succeed later: a JobError marked retryable, or a bare connection/timeout."""
    if isinstance(exc, JobError):
        return exc.retryable
    return isinstance(exc, ConnectionError | TimeoutError)


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when its failure is transient."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - the state's exception is what we classify
        return is_retryable(exc)
    return False
