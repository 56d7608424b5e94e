"""The retry policy the pipeline's tasks declare: transient failures only, with backoff."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.job import JobError

# Exponential backoff; each task adds jitter (retry_jitter_factor) so retries do not align.
RETRY_DELAYS_S = [2.0, 8.0, 30.0]


def is_retryable(exc: BaseException | None) -> bool:
    """Only what may succeed later: a JobError marked retryable (429, 5xx, timeouts, outages).

    The stages turn transient client errors into such JobErrors; anything else is a bug or the
    user's input, and repeating it would only delay the job's failure.
    """
    return isinstance(exc, JobError) and exc.retryable


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry the task only when its failure is transient."""
    # The engine hands over `Failed(data=<the exception>)` before anything is persisted.
    exc = state.data if isinstance(state.data, BaseException) else None
    return is_retryable(exc)


# A task that may meet a transient outage (Storage, here): retried with backoff and jitter, never
# cached (its result is a file of this run's scratch folder, or a write that must happen).
transient_task = task(
    retries=3,
    retry_delay_seconds=RETRY_DELAYS_S,
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
)


def last_attempt() -> bool:
    """Whether the task run calling this has no retry left (outside a task run: none, so
    true): what a task may leave out rather than fail on then, it can still retry before."""
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    if context is None:
        return True
    # run_count is 1 on the first attempt: with 3 retries, the fourth is the last.
    return context.task_run.run_count > context.task.retries
