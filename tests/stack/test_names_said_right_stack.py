"""Names said right, end to end: a batch whose jobs carry a `pronunciation` and the video's words
after the greeting (`followingText`), through the real stack to the ElevenLabs stand-in.

What the voice is asked for is seen at the fake (tests/support/fake_elevenlabs.py); what the user
sees is read from the job documents and Storage. Each test speaks in a voice id of its own, so the
speech cache (kept across sessions, keyed by voice, text and next text) cannot answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.job import JobRequest, result_path
from greetings.client.prospects import output_filename
from greetings.stack.manager import Stack
from tests.conftest import User
from tests.support.fake_elevenlabs import FakeElevenLabs
from tests.support.stackkit import (
    as_user,
    new_job_id,
    outputs,
    read_job,
    request_fields,
    upload,
    wait_finished,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

FOLLOWING = "I saw your team is hiring"


def test_a_batch_speaks_each_pronunciation_leading_into_the_following_words(
    stack: Stack,
    clients: Any,
    fake: FakeElevenLabs,
    make_user: Callable[[], User],
    sample_video: Path,
) -> None:
    user = make_user()
    voice = f"nsvoice{uuid.uuid4().hex[:13]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake.add_voice(voice)
    video = upload(clients, user, sample_video)
    # One batch (one commit, one flow run) of separate job documents: each carries its own
    # pronunciation, or none, and its copy of the batch's following words.
    batch_id = uuid.uuid4().hex
    said_as = {"Siobhan Kelly": "Sheh-VAWN", "Ada Lovelace": None}
    jobs = {
        new_job_id(): JobRequest(
            **request_fields(
                user,
                video,
                prospect_name=name,
                voice_id=voice,
                pronunciation=pronunciation,
                following_text=FOLLOWING,
                batch_id=batch_id,
            )
        )
        for name, pronunciation in said_as.items()
    }
    as_user(stack, user).create_batch(batch_id, jobs)
    batch_jobs = list(jobs)

    for job_id in batch_jobs:
        job = wait_finished(clients, job_id, 120)
        assert job["status"] == "completed", job.get("error")

    # The voice was asked for the respelling, with the video's next words as `next_text`.
    said = fake.requests_for("Hey Sheh-VAWN,")
    assert said and {r.next_text for r in said} == {FOLLOWING}
    assert {r.next_text for r in fake.requests_for("Hey Ada,")} == {FOLLOWING}
    # The following words are never spoken themselves, nor is the written name said.
    assert fake.requests_for(FOLLOWING) == []
    assert fake.requests_for("Hey Siobhan,") == []

    # Everywhere the user looks, the name is as written: the job, its result, its file name.
    siobhan_job = read_job(clients, batch_jobs[0])
    assert siobhan_job["prospectName"] == "Siobhan Kelly"
    assert siobhan_job["pronunciation"] == "Sheh-VAWN"  # the client's own field, kept as given
    shown = {k: v for k, v in siobhan_job.items() if k != "pronunciation"}
    assert "Sheh-VAWN" not in json.dumps(shown, default=str)
    assert "sheh" not in output_filename(siobhan_job["prospectName"], batch_jobs[0]).casefold()
    assert sorted(outputs(clients, user)) == sorted(result_path(user.uid, j) for j in batch_jobs)
