"""Two worker processes share one speech cache in a bucket (the Storage emulator, gs://).

Each process builds its voices from the settings exactly as a worker does
(`GREETINGS_SPEECH_CACHE=gs://...`, the stack's Prefect server, ElevenLabs played by this
session's stand-in) and speaks a greeting inside a flow run. What the first one synthesized, the
second one reads from the bucket: ElevenLabs is asked once, and both get the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_elevenlabs import FakeElevenLabs

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

WORKER = r"""
import hashlib, sys, tempfile
from pathlib import Path
from prefect import flow
from flows.settings import get_settings
from flows.stages.synthesize import build_voices, speak_greeting

voice_id, text = sys.argv[1], sys.argv[2]
voices = build_voices(get_settings())

@flow(name="shared-cache-check")
def speak() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return speak_greeting(voices, voice_id, text, Path(folder)).path.read_bytes()

print("SPOKEN", hashlib.sha256(speak()).hexdigest())
"""


def run_worker(env: dict[str, str], voice: str, text: str) -> str:
    """One worker process speaking `text`; the sha256 of the audio it got."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, voice, text],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout.split("SPOKEN ", 1)[1].split()[0]


def test_a_greeting_spoken_by_one_worker_is_read_by_another_from_the_bucket(
    stack: Any, clients: Any, fake: FakeElevenLabs
) -> None:
    voice = f"cache{uuid.uuid4().hex[:15]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake.add_voice(voice)
    folder = f"speech-cache-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "GREETINGS_SPEECH_CACHE": f"gs://{clients.bucket.name}/{folder}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    text = "Hey Ada,"

    first = run_worker(env, voice, text)
    assert fake.calls_for(text) == 1
    cached = [b.name for b in clients.bucket.list_blobs(prefix=f"{folder}/")]
    assert cached, "the first worker wrote nothing to the bucket"

    second = run_worker(env, voice, text)
    assert second == first
    assert fake.calls_for(text) == 1  # read from the bucket, not asked again
    other = run_worker(env, voice, "Hey Grace,")  # a new name is still spoken
    assert other != first and fake.calls_for("Hey Grace,") == 1
