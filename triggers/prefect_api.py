"""The Prefect REST calls the trigger needs, without importing prefect (fast cold starts)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
# The longest wait a server's Retry-After may ask for: past it, the job is better left to the sweep
# than holding the function past its 60 s timeout.
MAX_RETRY_AFTER_S = 30.0


class PrefectUnavailable(Exception):
    """Prefect was unreachable or answered with a server error: the job must start later."""


@dataclass
class PrefectApi:
    api_url: str
    api_key: str = ""
    timeout_s: float = 10.0
    # A busy answer without Retry-After is waited out 0.05 + 0.1 + ... + 12.8 s (25.6 s, with
    # jitter at most ~38 s): a busy server gets time to recover before the job is left to the
    # sweep, within the function's 60 s timeout. The first waits are short because the usual
    # busy answer is brief: a local Prefect server's SQLite answers 503 ("database is locked")
    # when another write landed while a run was being created, and a retry 50 ms later succeeds.
    # Starting at 0.5 s, that cost 0.4 s of a lone job's 2 s (the trigger's p50 0.09 -> 0.44 s).
    retries: int = 9
    busy_backoff_s: float = 0.05
    # Refused connections (a server restarting) get 0.5 + 1 + 2 + 4 + 8 s: a restart takes
    # seconds, and a server that is really down should not hold every trigger for a minute.
    connect_retries: int = 5
    connect_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._session = requests.Session()
        if self.api_key:
            self._session.headers["Authorization"] = f"Bearer {self.api_key}"
        self._deployment_ids: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call, repeated while Prefect asks for it (503, 429) or restarts."""
        url = f"{self.api_url.rstrip('/')}/{path.lstrip('/')}"
        busy = refused = 0
        while True:
            try:
                response = self._session.request(method, url, json=body, timeout=self.timeout_s)
            except requests.ConnectionError as exc:
                if refused == self.connect_retries:
                    raise PrefectUnavailable(
                        f"Prefect API at {self.api_url} unreachable: {exc}"
                    ) from exc
                self._pause(refused, self.connect_backoff_s)
                refused += 1
                continue
            except requests.RequestException as exc:
                raise PrefectUnavailable(
                    f"Prefect API at {self.api_url} unreachable: {exc}"
                ) from exc
            # Prefect answers 503 to a request it wants retried (e.g. its database was busy),
            # 429 when rate limited; its own client retries those, honouring Retry-After, and so
            # do we. Every call here is safe to repeat (flow runs are created with an
            # idempotency key).
            if response.status_code not in RETRY_STATUSES or busy == self.retries:
                break
            wait = retry_after(response.headers.get("Retry-After"))
            if wait is None:
                self._pause(busy, self.busy_backoff_s)
            elif wait > MAX_RETRY_AFTER_S:
                break
            else:
                time.sleep(wait)
            busy += 1
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise PrefectUnavailable(
                f"Prefect API answered {response.status_code} for {method} {path}: "
                f"{response.text[:300]}"
            )
        response.raise_for_status()
        return response.json() if response.content else None

    @staticmethod
    def _pause(retry: int, base_s: float) -> None:
        # Jitter, so a burst of jobs does not come back at the same instant.
        time.sleep(base_s * 2**retry * random.uniform(0.5, 1.5))

    def deployment_id(self, name: str) -> str:
        """The id of a deployment named `flow-name/deployment-name` (looked up once per process)."""
        if name not in self._deployment_ids:
            self._deployment_ids[name] = self.call("GET", f"/deployments/name/{name}")["id"]
        return self._deployment_ids[name]

    def create_flow_run(
        self, deployment: str, parameters: dict[str, Any], idempotency_key: str, name: str
    ) -> str:
        """Creates a flow run; the same idempotency key returns the run made the first time."""
        run = self.call(
            "POST",
            f"/deployments/{self.deployment_id(deployment)}/create_flow_run",
            {"parameters": parameters, "idempotency_key": idempotency_key, "name": name},
        )
        return str(run["id"])

    def cancel_flow_run_if_not_started(self, flow_run_id: str) -> bool:
        """Cancels a run that no worker has picked up yet; True if it was cancelled.

        A run that already started is left alone on purpose: the flow stops itself at its next
        stage transition when it sees the job cancelled, and cleans up after itself, which a
        killed process could not do.
        """
        run = self.call("GET", f"/flow_runs/{flow_run_id}")
        if run["state_type"] not in ("SCHEDULED", "PENDING"):
            return False
        result = self.call(
            "POST",
            f"/flow_runs/{flow_run_id}/set_state",
            {
                "state": {
                    "type": "CANCELLED",
                    "name": "Cancelled",
                    "message": "Cancelled by the user",
                }
            },
        )
        return bool(result and result.get("status") == "ACCEPT")


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks for (a number of seconds or an HTTP date, as
    RFC 9110 allows; Prefect Cloud sends it with 429), or None if there is none to honour."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return max(seconds, 0.0)
