"""Creating and inspecting greeting flow runs through the Prefect API (the sweep's side).

The trigger does the same over plain REST (triggers/prefect_api.py); both take the idempotency
key from flows/lifecycle.py, so a run the trigger made is never made twice.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from flows.lifecycle import flow_run_name, idempotency_key

GREETING_DEPLOYMENT = "greeting-pipeline/greeting-pipeline"
WAITING_STATES = frozenset({StateType.SCHEDULED, StateType.PENDING})
LIVE_STATES = WAITING_STATES | {StateType.RUNNING}


def create_job_run(client: SyncPrefectClient, job_id: str, attempt: int) -> str:
    """The flow run of this job's attempt (created, or the one that already exists)."""
    deployment = client.read_deployment_by_name(GREETING_DEPLOYMENT)
    run = client.create_flow_run_from_deployment(
        deployment.id,
        parameters={"job_id": job_id, "attempt": attempt},
        idempotency_key=idempotency_key(job_id, attempt),
        name=flow_run_name(job_id, attempt),
    )
    return str(run.id)


def run_is_live(client: SyncPrefectClient, flow_run_id: str | None) -> bool:
    if not flow_run_id:
        return False
    run = client.read_flow_run(UUID(flow_run_id))
    return run.state is not None and run.state.type in LIVE_STATES


def run_is_waiting(client: SyncPrefectClient, flow_run_id: str | None) -> bool:
    """Scheduled or pending: no worker has started it yet (it may be queued behind others)."""
    if not flow_run_id:
        return False
    run = client.read_flow_run(UUID(flow_run_id))
    return run.state is not None and run.state.type in WAITING_STATES


def mark_crashed(client: SyncPrefectClient, flow_run_id: str, message: str) -> Any:
    """Keeps Prefect's view honest when the sweep reaps a run whose process is gone."""
    return client.set_flow_run_state(UUID(flow_run_id), Crashed(message=message), force=True)
