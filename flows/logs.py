"""What the flow runs send to Prefect's log: what an operator reads, not the engine's chatter.

Prefect's task engine logs "Finished in state Completed()" (or "Cached(...)") at INFO for every
task run that succeeds: 5 of the 5 log lines per job of a batch, 500 per 100 jobs, each
formatted and sent by the worker and stored by the server, saying what the task run's state
in the UI already says. Failures are logged at ERROR and still go.
"""

from __future__ import annotations

import logging

TASK_RUN_LOGGER = "prefect.task_runs"
_FINISHED = "Finished in state "


class QuietTaskEnds(logging.Filter):
    """Drops the task engine's line for a task run that succeeded; keeps everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not (record.levelno <= logging.INFO and message.startswith(_FINISHED))


def quiet_task_ends() -> None:
    """Installs `QuietTaskEnds` on the task runs' logger, once per process (wherever the flows
    run: the local worker, a Cloud Run job, a Kubernetes pod)."""
    logger = logging.getLogger(TASK_RUN_LOGGER)
    if not any(isinstance(existing, QuietTaskEnds) for existing in logger.filters):
        logger.addFilter(QuietTaskEnds())
