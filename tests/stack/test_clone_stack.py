"""The rep's own voice through the whole stack: one clone per upload, whatever asks for it.

The stack's worker talks to the local ElevenLabs stand-in (tests/support/fake_elevenlabs.py),
which serves instant voice cloning (`POST /v1/voices/add`) and then speaks in the new voice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.stages.clone import VOICE_CLONES
from greetings.client.enduser import Denied
from greetings.samples import make_recording
from tests.conftest import User
from tests.support.fake_elevenlabs import FakeElevenLabs
from tests.support.stackkit import as_user, create_batch, upload, wait_finished

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

# About 15 s of speech: a clone needs at least 10 (ElevenLabs advises a minute).
PITCH = (
    "Hey there! I wanted to show you what we built for teams like yours. "
    "It takes the busywork out of every week, so your people spend their time on customers. "
    "Let me walk you through how it works, and what it saved a team just like yours last month."
)


@pytest.fixture(scope="module")
def pitch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("clone") / "pitch.mp4", PITCH)


def test_a_batch_in_the_reps_own_voice_clones_once_per_upload(
    stack: Any,
    clients: Any,
    make_user: Any,
    fake_elevenlabs: FakeElevenLabs | None,
    pitch: Path,
) -> None:
    if fake_elevenlabs is None:
        pytest.skip("another test session serves the ElevenLabs stand-in")
    user: User = make_user()
    video = upload(clients, user, pitch)
    before = fake_elevenlabs.clone_calls

    _, first = create_batch(stack, user, video, ["Ada Lovelace", "Grace Hopper"], voice_id="clone")
    _, second = create_batch(stack, user, video, ["Alan Turing"], voice_id="clone")
    jobs = {job_id: wait_finished(clients, job_id, 240) for job_id in [*first, *second]}

    assert {j["status"] for j in jobs.values()} == {"completed"}, [
        j.get("error") for j in jobs.values()
    ]
    assert fake_elevenlabs.clone_calls - before == 1, "cloned more than once for one upload"
    [voice] = {j["voiceUsed"] for j in jobs.values()}
    assert voice in fake_elevenlabs.clones

    [record] = clients.db.collection(VOICE_CLONES).where("userId", "==", user.uid).get()
    assert record.to_dict()["voiceId"] == voice
    assert record.to_dict()["inputVideo"] == video
    # Server-only: not even the owner reads or writes it.
    with pytest.raises(Denied):
        as_user(stack, user).get(VOICE_CLONES, record.id)
