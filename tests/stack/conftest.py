"""Fixtures only the stack tests share (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from greetings.stack.manager import Stack
from tests.conftest import FAKE_ELEVENLABS_PORT
from tests.support.fake_elevenlabs import FakeElevenLabs


@pytest.fixture
def fake(fake_elevenlabs: FakeElevenLabs | None, stack: Stack) -> FakeElevenLabs:
    """This session's stand-in for ElevenLabs, which the stack's worker calls, reset for the
    test: calls counted and answers scripted from here."""
    if fake_elevenlabs is None:
        pytest.fail(
            f"port {FAKE_ELEVENLABS_PORT} is held by another test session, whose fake serves the "
            "worker: run these tests when that session is over"
        )
    fake_elevenlabs.reset()
    return fake_elevenlabs
