"""Fixtures: the real local stack, started once per session, and end users on the Auth emulator.

If a stack is already running (a developer's `greetings stack up`), the tests use it and leave it
running; otherwise they start one and stop it at the end. Each test uses its own user ids and
job ids, so tests never see each other's data.

The stack's worker talks to ElevenLabs, played by a fake server (tests/fake_elevenlabs.py) this
session runs on a fixed port before the stack starts: voice ids `espeak:<voice>` keep the local
voice, the fake's voice ids go through the real SDK to the fake. The ElevenLabs variables are
exported for the worker (and any `greetings` subprocess) after this process has read its own
settings, so the in-process CLI behaves as on a machine without a key.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core.exceptions import GoogleAPIError, NotFound

from flows.lifecycle import results_prefix, upload_prefix
from greetings.settings import get_settings
from greetings.stack.manager import Stack
from tests.support.fake_elevenlabs import DEFAULT_API_KEY, FakeElevenLabs

STACK_TESTS_LAST = ("test_stack_down_leaves_nothing_behind",)
FAKE_ELEVENLABS_PORT = 4510
# Short (the default is 30 s), so a hung answer costs a test seconds; the fake answers far sooner.
FAKE_ELEVENLABS_TIMEOUT_S = 10
WORKER_ELEVENLABS_ENV = {
    "GREETINGS_ELEVENLABS_API_KEY": DEFAULT_API_KEY,
    "GREETINGS_ELEVENLABS_BASE_URL": f"http://127.0.0.1:{FAKE_ELEVENLABS_PORT}",
    "GREETINGS_ELEVENLABS_TIMEOUT_SECONDS": str(FAKE_ELEVENLABS_TIMEOUT_S),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test that takes the stack down runs after everything that needs it."""
    items.sort(key=lambda item: item.name.startswith(STACK_TESTS_LAST))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A real temporary Prefect server (SQLite), for tests of tasks' retries and caching."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="session")
def fake_elevenlabs() -> Iterator[FakeElevenLabs | None]:
    """The ElevenLabs the stack's worker calls; None if another test session serves the port."""
    try:
        fake = FakeElevenLabs(port=FAKE_ELEVENLABS_PORT)
    except OSError:
        yield None
        return
    with fake:
        yield fake


@pytest.fixture(scope="session")
def stack(fake_elevenlabs: FakeElevenLabs | None) -> Iterator[Stack]:
    stack = Stack(get_settings())  # read (and cached) before the ElevenLabs variables exist
    os.environ.update(WORKER_ELEVENLABS_ENV)
    # Started here only if nothing of it ran: a stack that is up but briefly unhealthy (a worker
    # restarting for another session) belongs to someone else and must outlive this session.
    started_here = not any(stack.pid(svc.name) for svc in stack.services())
    healthy = not started_here and stack.status(echo=lambda _: None)
    marker = stack.pids / "prefect-worker.code"
    # A running worker started with other code or ElevenLabs settings: up() restarts it.
    stale = marker.is_file() and marker.read_text() != stack._code_fingerprint()
    if not healthy or stale:
        began = time.monotonic()
        stack.up(echo=lambda line: print(line))
        print(f"stack up took {time.monotonic() - began:.1f} s")
    os.environ.update(stack.client_env())
    yield stack
    if started_here and any(stack.pid(svc.name) for svc in stack.services()):
        stack.down(echo=lambda _: None)


@pytest.fixture(scope="session")
def clients(stack: Stack) -> Any:
    from flows.clients import worker_clients

    return worker_clients()


@dataclass
class User:
    uid: str
    id_token: str
    email: str


def remove_objects_of(bucket: Any, uid: str) -> int:
    """Deletes what the user uploaded and what its jobs stored; how many objects went.

    The Storage emulator rewrites its index of every object on each write: what one run of the
    stack tests left (160 MB over three files) made each later write cost it 10 % more CPU, and a
    developer's stack carries it from run to run until the Firestore emulator restarts.
    """
    removed = 0
    for prefix in (upload_prefix(uid), results_prefix(uid)):
        for blob in bucket.client.list_blobs(bucket, prefix=prefix):
            try:
                blob.delete()
            except NotFound:  # a job of this user deleted it meanwhile
                continue
            removed += 1
    return removed


@pytest.fixture
def make_user(stack: Stack, clients: Any) -> Iterator[Callable[[], User]]:
    """Signs up a fresh end user on the Auth emulator and returns its uid and ID token; once
    the test is over, what the user stored goes."""
    settings = stack.s
    made: list[User] = []

    def make() -> User:
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        response = requests.post(
            f"http://{settings.auth_emulator_host}/identitytoolkit.googleapis.com/v1/"
            "accounts:signUp?key=local",
            json={"email": email, "password": "secret-123", "returnSecureToken": True},
            timeout=10,
        )
        response.raise_for_status()
        body = response.json()
        user = User(uid=body["localId"], id_token=body["idToken"], email=email)
        made.append(user)
        return user

    yield make
    for user in made:
        try:
            remove_objects_of(clients.bucket, user.uid)
        except (GoogleAPIError, requests.RequestException) as exc:  # a test stopped Storage
            warnings.warn(f"objects of {user.uid} left in Storage: {exc}", stacklevel=1)


def wait_for(
    read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float, every_s: float = 0.2
) -> Any:
    """Polls `read` until `done(value)`; returns the value or fails with the last one seen."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s; last value: {value!r}")
        time.sleep(every_s)
        value = read()
    return value


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s 640x360 H.264/AAC clip whose narration opens with a greeting."""
    from greetings.samples import make_sample_video

    path = tmp_path_factory.mktemp("media") / "sales.mp4"
    return make_sample_video(path, seconds=8, width=640, height=360)


@dataclass
class Uploaded:
    """A fresh user with the sample video in their own upload folder."""

    user: User
    path: str  # the object path a job's inputVideo names


@pytest.fixture
def uploaded(make_user: Callable[[], User], clients: Any, sample_video: Path) -> Uploaded:
    from tests.support.stackkit import upload

    user = make_user()
    return Uploaded(user, upload(clients, user, sample_video))


@pytest.fixture(scope="session")
def prefect_client(stack: Any) -> Iterator[Any]:
    """A real Prefect client on the stack's server (the sweep's side of orchestration).

    Prefect fixes its settings when first imported, before the stack fixture exports
    PREFECT_API_URL, so the URL is set here explicitly.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_URL: stack.s.prefect_api}),
        get_client(sync_client=True) as client,
    ):
        yield client
