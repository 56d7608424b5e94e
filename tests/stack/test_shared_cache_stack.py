"""Two worker processes share one speech cache in a bucket (the Storage emulator).

Each process builds its voices from the settings exactly as a worker does (the stack's Prefect
server, ElevenLabs played by this session's stand-in) and speaks a greeting inside a flow run.
What the first one synthesized, the second one reads from the bucket: ElevenLabs is asked once,
and both get the same bytes. Both ways of naming the bucket are run:
`GREETINGS_SPEECH_CACHE=gs://...` (gcsfs) and `gcs-bucket/<block>`, a saved prefect-gcp GcsBucket
whose GcpCredentials hold a service-account key (the stack's: its token comes from the Storage
proxy's stand-in of Google's token endpoint).
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


def gcs_bucket_block(stack: Any, bucket: str, folder: str) -> str:
    """A GcsBucket block saved on the stack's Prefect server, as an operator would save theirs."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    name = f"speech-cache-{uuid.uuid4().hex[:8]}"
    credentials = GcpCredentials(service_account_file=stack.signer_key)
    # This process read its Prefect settings before the stack's address was known.
    with temporary_settings(updates={PREFECT_API_URL: stack.s.prefect_api}):
        GcsBucket(bucket=bucket, bucket_folder=folder, gcp_credentials=credentials).save(name)
    return f"gcs-bucket/{name}"


@pytest.mark.parametrize("named_by", ["gs-url", "gcs-bucket-block"])
def test_a_greeting_spoken_by_one_worker_is_read_by_another_from_the_bucket(
    stack: Any, clients: Any, fake: FakeElevenLabs, named_by: str
) -> None:
    voice = f"cache{uuid.uuid4().hex[:15]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake.add_voice(voice)
    folder = f"speech-cache-{uuid.uuid4().hex[:8]}"
    if named_by == "gs-url":
        cache = f"gs://{clients.bucket.name}/{folder}"
    else:
        cache = gcs_bucket_block(stack, clients.bucket.name, folder)
    env = {
        **os.environ,
        "GREETINGS_SPEECH_CACHE": cache,
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
