"""The flows' Prefect log keeps failures and our own lines, not the engine's "Finished" chatter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from flows.logs import TASK_RUN_LOGGER, QuietTaskEnds, quiet_task_ends


@pytest.fixture
def task_log() -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger(TASK_RUN_LOGGER)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    filters, level = list(logger.filters), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = filters
        logger.setLevel(level)


def test_a_task_that_succeeded_is_not_logged_and_a_failure_is(
    task_log: list[logging.LogRecord],
) -> None:
    quiet_task_ends()
    quiet_task_ends()  # once per process, however many flow runs call it
    logger = logging.getLogger(TASK_RUN_LOGGER)
    assert sum(isinstance(f, QuietTaskEnds) for f in logger.filters) == 1
    logger.info("Finished in state %s", "Completed()")
    logger.info("Finished in state Cached(type=COMPLETED)")
    logger.error("Finished in state Failed('render-failed')")
    logger.info("no shared thumbnails of user-uploads/u/v.mp4")
    logger.warning("Finished in state Crashed('worker-lost')")
    assert [record.getMessage() for record in task_log] == [
        "Finished in state Failed('render-failed')",
        "no shared thumbnails of user-uploads/u/v.mp4",
        "Finished in state Crashed('worker-lost')",
    ]
