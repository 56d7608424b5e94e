"""Where a batch's time goes outside the pipeline's stages: the trigger, Prefect, the worker.

- the Functions emulator's own log says how long each trigger invocation took and whether any
  two ran at once;
- the Prefect API is timed once a second during the batch (`/health` answers without the
  database, `/flow_runs/count` reads it), so a slow server shows as a number;
- each flow run's states say how long it waited to be claimed, submitted and started, and the
  worker's "submitting flow run" log line says when it took one of its slots.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from greetings.bench.stats import spread

PROBE_EVERY_S = 1.0
SAMPLE_RUNS = 5
# The most logs or task runs the API returns for one filter call.
PAGE = 200
SUBMITTING = "submitting flow run"
# A flow run's states as the in-process worker moves it, by state name.
PREFECT_STEPS: tuple[tuple[str, str, str], ...] = (
    ("claimed by the worker (Scheduled -> Pending)", "Scheduled", "Pending"),
    ("worker submits it (Pending -> Submitting)", "Pending", "Submitting"),
    ("engine starts it (Submitting -> Running)", "Submitting", "Running"),
    ("flow runs (Running -> Completed)", "Running", "Completed"),
)
_BEGIN = re.compile(r'Beginning execution of "(?:[\w-]+-)?(on_\w+)"')
_FINISH = re.compile(r'Finished "(?:[\w-]+-)?(on_\w+)" in ([\d.]+)ms')


def overlap(
    intervals: Sequence[tuple[float, float]], span_s: float | None
) -> dict[str, float | int | None]:
    """How many intervals were open at once: the peak, and the mean over `span_s` (pure)."""
    if not intervals or not span_s:
        return {"peak": None, "mean": None}
    events = sorted([(b, 1) for b, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = open_now = 0
    for _, step in events:
        open_now += step
        peak = max(peak, open_now)
    busy = sum(e - b for b, e in intervals)
    return {"peak": peak, "mean": round(busy / span_s, 2)}


def _iso(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


# --- the trigger ---------------------------------------------------------------------------------


def function_invocations(log_text: str) -> dict[str, Any]:
    """Each function's invocations in a stretch of the Functions emulator's log (pure).

    `max_in_flight` 1 means the emulator ran every invocation after the one before it.
    """
    durations: dict[str, list[float]] = {}
    in_flight = max_in_flight = 0
    for line in log_text.splitlines():
        if _BEGIN.search(line):
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
        elif found := _FINISH.search(line):
            in_flight = max(0, in_flight - 1)
            durations.setdefault(found.group(1), []).append(float(found.group(2)))
    return {
        "max_in_flight": max_in_flight,
        **{
            name: {**spread(values), "total_s": round(sum(values) / 1000, 1)}
            for name, values in sorted(durations.items())
        },
    }


@dataclass
class LogTail:
    """What a log file gains from now on."""

    path: Path
    offset: int = 0

    def __post_init__(self) -> None:
        self.offset = self.path.stat().st_size if self.path.is_file() else 0

    def read(self) -> str:
        if not self.path.is_file():
            return ""
        with self.path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")


# --- the Prefect server's responsiveness --------------------------------------------------------


@dataclass
class ApiProbe:
    """Times two cheap Prefect API calls every PROBE_EVERY_S on a thread."""

    api: str
    health_ms: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _time(self, session: requests.Session, method: str, path: str) -> float | None:
        began = time.perf_counter()
        try:
            body: dict[str, Any] | None = {} if method == "POST" else None
            response = session.request(method, f"{self.api}{path}", json=body, timeout=60)
        except requests.RequestException:
            self.errors += 1
            return None
        if response.status_code >= 400:
            self.errors += 1
            return None
        return (time.perf_counter() - began) * 1000

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            if (ms := self._time(session, "GET", "/health")) is not None:
                self.health_ms.append(ms)
            if (ms := self._time(session, "POST", "/flow_runs/count")) is not None:
                self.read_ms.append(ms)
            self._stop.wait(PROBE_EVERY_S)

    def __enter__(self) -> ApiProbe:
        self._thread = threading.Thread(target=self._run, name="bench-prefect-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=65)

    def report(self) -> dict[str, Any]:
        return {
            "health_ms": spread(self.health_ms),
            "flow_runs_count_ms": spread(self.read_ms),
            "errors": self.errors,
        }


# --- the flow runs --------------------------------------------------------------------------------


def state_steps(states: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds between the first states of each PREFECT_STEPS pair in one run's history (pure)."""
    first: dict[str, float] = {}
    for state in states:
        at = _iso(state.get("timestamp"))
        if at is not None and isinstance(state.get("name"), str):
            first.setdefault(state["name"], at)
    return {
        label: first[end] - first[start]
        for label, start, end in PREFECT_STEPS
        if start in first and end in first
    }


class _Api:
    def __init__(self, api: str) -> None:
        self.api = api
        self.session = requests.Session()

    def get(self, path: str, **params: str) -> Any:
        response = self.session.get(f"{self.api}{path}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.session.post(f"{self.api}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        """Every task run of a flow run, page by page: a 100-job batch has about 400, and one
        call returns at most PAGE (the report read 200 a run, the cap, until 2026-12-06)."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.post(
                "/task_runs/filter",
                {
                    "flow_runs": {"id": {"any_": [flow_run_id]}},
                    "limit": PAGE,
                    "offset": len(found),
                    "sort": "EXPECTED_START_TIME_ASC",
                },
            )
            found += page
            if len(page) < PAGE:
                return found

    def logs(self, flow_run_ids: Sequence[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.post(
                "/logs/filter",
                {
                    "logs": {"flow_run_id": {"any_": list(flow_run_ids)}},
                    "limit": PAGE,
                    "offset": len(found),
                },
            )
            found += page
            if len(page) < PAGE:
                return found


def flow_runs_report(
    api_url: str, flow_run_ids: Sequence[str], slots: int | None
) -> dict[str, Any]:
    """Where each flow run's time went between its states, how many of the worker's slots were
    taken, and what Prefect stored per run (every state, task run and log is at least one API
    call from the worker; events and heartbeats leave nothing here to count)."""
    if not flow_run_ids:
        return {}
    api = _Api(api_url)
    runs = api.post("/flow_runs/filter", {"flow_runs": {"id": {"any_": list(flow_run_ids)}}})
    final_states: dict[str, int] = {}
    scheduled: dict[str, float] = {}
    ended: dict[str, float] = {}
    steps: dict[str, list[float]] = {label: [] for label, _, _ in PREFECT_STEPS}
    flow_states: list[int] = []
    for run in runs:
        name = str((run.get("state") or {}).get("name") or run.get("state_type"))
        final_states[name] = final_states.get(name, 0) + 1
        if end := _iso(run.get("end_time")):
            ended[run["id"]] = end
        states = api.get("/flow_run_states/", flow_run_id=run["id"])
        flow_states.append(len(states))
        for label, seconds in state_steps(states).items():
            steps[label].append(seconds)
        if states and (at := _iso(states[0].get("timestamp"))):
            scheduled[run["id"]] = at

    logs = api.logs(flow_run_ids)
    taken: dict[str, float] = {}
    for log in logs:
        if SUBMITTING in str(log.get("message")) and (at := _iso(log.get("timestamp"))):
            taken.setdefault(str(log["flow_run_id"]), at)
    span = (max(ended.values()) - min(scheduled.values())) if ended and scheduled else None
    # A slot is held from the moment the worker takes the run until the run has ended.
    held = [(at, ended[run]) for run, at in taken.items() if run in ended]
    waiting = [(scheduled[run], at) for run, at in taken.items() if run in scheduled]

    others = None
    if scheduled and ended:
        # Runs of other users of this stack (tests, a demo) that started during the batch: they
        # shared the worker, the Prefect server and the CPUs with it.
        window = {
            "after_": datetime.fromtimestamp(min(scheduled.values()), UTC).isoformat(),
            "before_": datetime.fromtimestamp(max(ended.values()), UTC).isoformat(),
        }
        others = api.post(
            "/flow_runs/count",
            {"flow_runs": {"id": {"not_any_": list(flow_run_ids)}, "start_time": window}},
        )

    task_runs, task_states = [], []
    for run_id in list(flow_run_ids)[:SAMPLE_RUNS]:
        tasks = api.task_runs(run_id)
        task_runs.append(len(tasks))
        task_states.append(
            sum(len(api.get("/task_run_states/", task_run_id=task["id"])) for task in tasks)
        )

    def mean(values: Sequence[float]) -> float | None:
        return round(sum(values) / len(values), 1) if values else None

    return {
        "flow_runs": len(runs),
        "final_states": final_states,
        "other_runs_meanwhile": others,
        "steps_s": {label: spread(values, digits=2) for label, values in steps.items()},
        "worker_slots": {"limit": slots, **overlap(held, span)},
        "waiting_to_be_taken": overlap(waiting, span),
        "flow_states_per_run": mean(flow_states),
        "logs_per_run": round(len(logs) / len(runs), 1) if runs else None,
        "sampled_runs": len(task_runs),
        "task_runs_per_run": mean(task_runs),
        "task_states_per_run": mean(task_states),
    }
