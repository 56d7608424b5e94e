"""The trigger's Prefect client against a local HTTP server: what it retries, and how long."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.stackkit import prefect_api

Answer = int | tuple[int, dict[str, str]]


class Server:
    """Answers GET /api/deployments/name/... with the scripted statuses (each with headers of
    its own, if given), then 200."""

    def __init__(self, port: int, statuses: list[Answer]) -> None:
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.calls += 1
                answer = statuses.pop(0) if statuses else 200
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                body = json.dumps({"id": "deployment-1"} if status == 200 else {"detail": "busy"})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def api(port: int, **options: float) -> prefect_api.PrefectApi:
    return prefect_api.PrefectApi(f"http://127.0.0.1:{port}/api", connect_backoff_s=0.05, **options)  # type: ignore[arg-type]


def test_a_busy_server_is_asked_again(port: int) -> None:
    server = Server(port, [503, 429])
    try:
        assert api(port).deployment_id("greeting-pipeline/greeting-pipeline") == "deployment-1"
        assert server.calls == 3
    finally:
        server.close()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's sleeps, recorded instead of slept (jitter at its midpoint)."""
    slept: list[float] = []
    monkeypatch.setattr(prefect_api.time, "sleep", slept.append)
    monkeypatch.setattr(prefect_api.random, "uniform", lambda low, high: (low + high) / 2)
    return slept


def test_a_brief_busy_answer_is_asked_again_at_once_then_less_often(
    port: int, waits: list[float]
) -> None:
    """A local server's 503 ("database is locked") passes in milliseconds: the first retry comes
    50 ms later, not 0.5 s (a lone job's trigger waited 0.4 s on it), and later ones back off."""
    server = Server(port, [503, 503, 502, 504])
    try:
        assert api(port).deployment_id("d/d")
        assert server.calls == 5
        assert waits == pytest.approx([0.05, 0.1, 0.2, 0.4])
    finally:
        server.close()


def test_a_busy_server_gets_about_half_a_minute_in_all(port: int, waits: list[float]) -> None:
    """Patience within the function's 60 s timeout: 0.05 * (2**9 - 1) s, jitter aside."""
    server = Server(port, [503] * 20)
    try:
        with pytest.raises(prefect_api.PrefectUnavailable, match="503"):
            api(port).deployment_id("d/d")
        assert server.calls == 10
        assert sum(waits) == pytest.approx(25.55)
    finally:
        server.close()


def test_retry_after_is_waited_as_asked(port: int, waits: list[float]) -> None:
    """Prefect Cloud's 429 says when to come back; asking sooner would only be refused again."""
    server = Server(port, [(429, {"Retry-After": "3"}), (503, {"Retry-After": "0.5"})])
    try:
        assert api(port).deployment_id("d/d") == "deployment-1"
        assert waits == [3.0, 0.5]
    finally:
        server.close()


def test_a_retry_after_past_the_functions_patience_leaves_the_job_to_the_sweep(
    port: int, waits: list[float]
) -> None:
    server = Server(port, [(429, {"Retry-After": "120"})])
    try:
        with pytest.raises(prefect_api.PrefectUnavailable, match="429"):
            api(port).deployment_id("d/d")
        assert server.calls == 1
        assert waits == []
    finally:
        server.close()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("soon", None),
        ("Thu, 03 Dec 2026 12:00:10 GMT", 10.0),
        ("Thu, 03 Dec 2026 11:59:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    assert prefect_api.retry_after(header, now) == seconds


def test_a_server_busy_past_the_retries_means_unavailable(port: int) -> None:
    server = Server(port, [503] * 10)
    try:
        with pytest.raises(prefect_api.PrefectUnavailable, match="503"):
            api(port, retries=2).deployment_id("d/d")
        assert server.calls == 3
    finally:
        server.close()


def test_a_restarting_server_is_waited_for(port: int) -> None:
    """Refused connections for a moment (Prefect restarting) do not leave the job to the sweep."""
    holder: list[Server] = []
    starter = threading.Timer(0.4, lambda: holder.append(Server(port, [])))
    starter.start()
    try:
        began = time.monotonic()
        assert api(port, connect_retries=6).deployment_id("d/d") == "deployment-1"
        assert time.monotonic() - began >= 0.4
    finally:
        starter.join()
        for server in holder:
            server.close()


def test_a_server_that_stays_down_is_given_up_on(port: int) -> None:
    began = time.monotonic()
    with pytest.raises(prefect_api.PrefectUnavailable, match="unreachable"):
        api(port, connect_retries=3).deployment_id("d/d")
    # 0.05 * (1 + 2 + 4) s with jitter of 0.5x-1.5x: bounded, not a minute.
    assert time.monotonic() - began < 2
