"""The trigger's Prefect client against a local HTTP server: what it retries, and how long."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.stackkit import prefect_api


class Server:
    """Answers GET /api/deployments/name/... with the scripted statuses, then 200."""

    def __init__(self, port: int, statuses: list[int]) -> None:
        self.calls = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.calls += 1
                status = statuses.pop(0) if statuses else 200
                body = json.dumps({"id": "deployment-1"} if status == 200 else {"detail": "busy"})
                self.send_response(status)
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
    return prefect_api.PrefectApi(f"http://127.0.0.1:{port}/api", backoff_s=0.05, **options)  # type: ignore[arg-type]


def test_a_busy_server_is_asked_again(port: int) -> None:
    server = Server(port, [503, 429])
    try:
        assert api(port).deployment_id("greeting-pipeline/greeting-pipeline") == "deployment-1"
        assert server.calls == 3
    finally:
        server.close()


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
