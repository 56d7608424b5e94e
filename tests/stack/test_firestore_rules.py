"""firestore.rules against the Firestore emulator, with real ID tokens from the Auth emulator."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flows.fit_check import FIT_CHECKS
from flows.job import BATCHES, COLLECTION, REQUESTS, RequestAction
from flows.lifecycle import SHARES
from greetings.client.enduser import Denied, FirestoreAsUser
from tests.conftest import User

pytestmark = pytest.mark.stack


def as_user(stack: Any, user: User | None) -> FirestoreAsUser:
    return FirestoreAsUser(
        f"http://{stack.s.firestore_emulator_host}/v1",
        stack.s.project_id,
        user.id_token if user else None,
    )


def new_job(user: User, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "userId": user.uid,
        "inputVideo": f"user-uploads/{user.uid}/abc123.mp4",
        "prospectName": "Jane Doe",
        "voiceId": "espeak:en-us",
        "greetingEndSecond": 1.5,
        "status": "pending",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not _DROP}


_DROP = object()


@pytest.fixture
def alice(make_user: Callable[[], User]) -> User:
    return make_user()


@pytest.fixture
def bob(make_user: Callable[[], User]) -> User:
    return make_user()


def create(stack: Any, user: User | None, fields: dict[str, Any], job_id: str = "") -> str:
    job_id = job_id or f"rules-{uuid.uuid4().hex[:16]}"
    as_user(stack, user).create(COLLECTION, job_id, fields, ("createdAt",))
    return job_id


def seed(clients: Any, owner: User, status: str, **extra: Any) -> str:
    """A job as the server would have left it (written with admin rights)."""
    job_id = f"rules-{uuid.uuid4().hex[:16]}"
    clients.db.collection(COLLECTION).document(job_id).set(
        {**new_job(owner), "status": status, "createdAt": 1, **extra}
    )
    return job_id


# --- create ----------------------------------------------------------------------------------


def test_owner_creates_a_valid_job(stack: Any, alice: User) -> None:
    create(stack, alice, new_job(alice))


def test_owner_creates_with_optional_fields(stack: Any, alice: User) -> None:
    create(stack, alice, new_job(alice, greetingText="Hi {name}!", batchId="batch-1"))
    create(stack, alice, new_job(alice, batchId="batch-1", batchIndex=399))
    create(
        stack,
        alice,
        new_job(alice, ctaUrl="https://cal.example.com/x?y=1", ctaText="Book", senderName="Sam"),
    )
    create(stack, alice, new_job(alice, firstName="Anna-Lena", greetingFallback="friend"))
    create(stack, alice, new_job(alice, firstName=""))  # blank: greet with the fallback word
    create(stack, alice, new_job(alice, pronunciation="Sheh-VAWN", followingText="I saw you"))
    create(stack, alice, new_job(alice, pronunciation="x" * 100, followingText="x" * 200))
    create(stack, alice, new_job(alice, greetingEndSecond=_DROP))  # found from the recording
    create(stack, alice, new_job(alice, preview=True))  # `greetings preview`


def test_every_kind_of_voice_id_is_allowed(stack: Any, alice: User) -> None:
    for voice in ("JBFqnCBsd6RMkjVDRZzb", "espeak:en-us+f3", "piper:joe", "clone"):
        create(stack, alice, new_job(alice, voiceId=voice))


def test_job_ids_are_bounded(stack: Any, alice: User) -> None:
    with pytest.raises(Denied):
        create(stack, alice, new_job(alice), job_id="x" * 129)
    with pytest.raises(Denied):
        create(stack, alice, new_job(alice), job_id="a.b")
    create(stack, alice, new_job(alice), job_id=f"ok-{uuid.uuid4().hex}" + "x" * 93)  # 128


def test_integer_greeting_end_is_a_number(stack: Any, alice: User) -> None:
    create(stack, alice, new_job(alice, greetingEndSecond=2))


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("forged status", {"status": "completed"}),
        ("forged downloadUrl", {"downloadUrl": "https://evil.example/x.mp4"}),
        ("forged outputPath", {"outputPath": "greeting-results/x/y.mp4"}),
        ("forged posterPath", {"posterPath": "greeting-results/x/y.poster.jpg"}),
        ("forged thumbnailUrl", {"thumbnailUrl": "https://evil.example/x.gif"}),
        ("forged retryCount", {"retryCount": 0}),
        ("forged progress", {"progress": 100}),
        ("unknown field", {"priority": "high"}),
        ("name empty", {"prospectName": ""}),
        ("name only spaces", {"prospectName": "   "}),
        ("name 101 characters", {"prospectName": "x" * 101}),
        ("name not a string", {"prospectName": 42}),
        ("greetingEndSecond zero", {"greetingEndSecond": 0}),
        ("greetingEndSecond negative", {"greetingEndSecond": -1.0}),
        ("greetingEndSecond 11", {"greetingEndSecond": 11}),
        ("greetingEndSecond NaN", {"greetingEndSecond": float("nan")}),
        ("greetingEndSecond a string", {"greetingEndSecond": "1.5"}),
        ("voiceId empty", {"voiceId": ""}),
        ("voiceId a path", {"voiceId": "../../v1/sound-generation"}),
        ("voiceId of no kind", {"voiceId": "voice-1"}),
        ("input name with an encoded separator", {"inputVideo": "user-uploads/{uid}/a%2Fb.mp4"}),
        ("batchId with a slash", {"batchId": "a/b"}),
        ("batchIndex without a batch", {"batchIndex": 0}),
        ("ctaUrl over http", {"ctaUrl": "http://cal.example.com/x"}),
        ("ctaUrl a script", {"ctaUrl": "javascript:alert(1)//https://"}),
        ("ctaUrl with credentials", {"ctaUrl": "https://u:p@cal.example.com/"}),
        ("ctaText too long", {"ctaText": "x" * 41}),
        ("senderName empty", {"senderName": ""}),
        ("forged views", {"views": 1000}),
        ("forged shareId", {"shareId": "A" * 22}),
        ("batchIndex negative", {"batchId": "batch-1", "batchIndex": -1}),
        ("batchIndex not a whole number", {"batchId": "batch-1", "batchIndex": 1.5}),
        ("greetingText too long", {"greetingText": "x" * 201}),
        ("preview not a boolean", {"preview": "yes"}),
        ("firstName too long", {"firstName": "x" * 101}),
        ("firstName not a string", {"firstName": 7}),
        ("greetingFallback empty", {"greetingFallback": ""}),
        ("greetingFallback too long", {"greetingFallback": "x" * 41}),
        ("pronunciation empty", {"pronunciation": ""}),
        ("pronunciation too long", {"pronunciation": "x" * 101}),
        ("pronunciation not a string", {"pronunciation": ["Sheh", "VAWN"]}),
        ("followingText empty", {"followingText": ""}),
        ("followingText too long", {"followingText": "x" * 201}),
        ("followingText not a string", {"followingText": 7}),
        ("missing voiceId", {"voiceId": _DROP}),
        ("input outside uploads", {"inputVideo": "greeting-results/someone/x.mp4"}),
        ("input path traversal", {"inputVideo": "user-uploads/{uid}/../other/x.mp4"}),
        ("input is the folder itself", {"inputVideo": "user-uploads/{uid}/"}),
    ],
)
def test_create_refused(stack: Any, alice: User, case: str, overrides: dict[str, Any]) -> None:
    fields = new_job(alice, **overrides)
    if isinstance(fields.get("inputVideo"), str):
        fields["inputVideo"] = fields["inputVideo"].replace("{uid}", alice.uid)
    with pytest.raises(Denied) as denied:
        create(stack, alice, fields)
    assert denied.value.status == 403, case


def test_create_for_another_user_refused(stack: Any, alice: User, bob: User) -> None:
    with pytest.raises(Denied):
        create(stack, alice, new_job(bob))


def test_create_with_another_users_upload_refused(stack: Any, alice: User, bob: User) -> None:
    with pytest.raises(Denied):
        create(stack, alice, new_job(alice, inputVideo=f"user-uploads/{bob.uid}/their.mp4"))


def test_create_unauthenticated_refused(stack: Any, alice: User) -> None:
    with pytest.raises(Denied):
        create(stack, None, new_job(alice))


def test_create_with_client_chosen_created_at_refused(stack: Any, alice: User) -> None:
    job_id = f"rules-{uuid.uuid4().hex[:16]}"
    fields = {**new_job(alice), "createdAt": "2020-01-01"}
    with pytest.raises(Denied):
        as_user(stack, alice).create(COLLECTION, job_id, fields, ())


# --- read and list ---------------------------------------------------------------------------


def test_owner_reads_own_job(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "queued")
    assert as_user(stack, alice).get(COLLECTION, job_id)["status"] == "queued"


def test_other_user_cannot_read(stack: Any, clients: Any, alice: User, bob: User) -> None:
    job_id = seed(clients, alice, "queued")
    with pytest.raises(Denied):
        as_user(stack, bob).get(COLLECTION, job_id)


def test_unauthenticated_cannot_read(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "queued")
    with pytest.raises(Denied):
        as_user(stack, None).get(COLLECTION, job_id)


def test_list_own_jobs_only(stack: Any, clients: Any, alice: User, bob: User) -> None:
    mine = seed(clients, alice, "queued")
    seed(clients, bob, "queued")
    rows = as_user(stack, alice).list_mine(COLLECTION, alice.uid)
    assert [row["id"] for row in rows] == [mine]


def test_list_someone_elses_jobs_refused(stack: Any, clients: Any, alice: User, bob: User) -> None:
    seed(clients, bob, "queued")
    with pytest.raises(Denied):
        as_user(stack, alice).list_mine(COLLECTION, bob.uid)


# --- requests: cancel while unfinished, retry once failed; no update of the job itself ---------


@pytest.mark.parametrize("status", ["queued", "validating-input", "generating-video"])
def test_cancel_request_allowed_while_running(
    stack: Any, clients: Any, alice: User, status: str
) -> None:
    job_id = seed(clients, alice, status)
    as_user(stack, alice).request(job_id, alice.uid, RequestAction.CANCEL)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancel_request_refused_when_finished(
    stack: Any, clients: Any, alice: User, status: str
) -> None:
    job_id = seed(clients, alice, status)
    with pytest.raises(Denied):
        as_user(stack, alice).request(job_id, alice.uid, RequestAction.CANCEL)


def test_retry_request_allowed_after_failure(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "failed")
    as_user(stack, alice).request(job_id, alice.uid, RequestAction.RETRY)


@pytest.mark.parametrize(
    "changes",
    [
        {"greetingEndSecond": 2.25},
        {"greetingEndSecond": None, "greetingText": None, "pronunciation": None},
        {"firstName": "", "greetingText": "Hi {firstName},", "pronunciation": "Sheh-VAWN"},
    ],
)
def test_edit_and_retry_allowed_after_failure(
    stack: Any, clients: Any, alice: User, changes: dict[str, Any]
) -> None:
    job_id = seed(clients, alice, "failed")
    as_user(stack, alice).request(job_id, alice.uid, RequestAction.RETRY, changes)


@pytest.mark.parametrize(
    ("action", "changes"),
    [
        (RequestAction.RETRY, {}),  # nothing to change: a plain retry has no `changes`
        (RequestAction.RETRY, {"greetingEndSecond": 10.5}),
        (RequestAction.RETRY, {"greetingEndSecond": 0}),
        (RequestAction.RETRY, {"greetingEndSecond": "2"}),
        (RequestAction.RETRY, {"greetingText": ""}),
        (RequestAction.RETRY, {"firstName": None}),
        (RequestAction.RETRY, {"pronunciation": "x" * 101}),
        (RequestAction.RETRY, {"inputVideo": "user-uploads/bob/other.mp4"}),  # another's video
        (RequestAction.RETRY, {"voiceId": "piper:joe"}),
        (RequestAction.RETRY, {"status": "completed"}),
        (RequestAction.CANCEL, {"greetingEndSecond": 2.0}),  # only a retry edits
    ],
)
def test_edit_and_retry_refused_for_other_fields_and_values(
    stack: Any, clients: Any, alice: User, action: RequestAction, changes: dict[str, Any]
) -> None:
    job_id = seed(clients, alice, "failed" if action == RequestAction.RETRY else "queued")
    with pytest.raises(Denied) as refused:
        as_user(stack, alice).create(
            f"{COLLECTION}/{job_id}/{REQUESTS}",
            uuid.uuid4().hex,
            {"action": action.value, "userId": alice.uid, "changes": changes},
            ("createdAt",),
        )
    assert refused.value.status == 403  # the rules said no, not a malformed request


def test_retry_request_refused_unless_failed(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "completed")
    with pytest.raises(Denied):
        as_user(stack, alice).request(job_id, alice.uid, RequestAction.RETRY)


def test_revoke_share_only_of_ones_own_completed_shared_job(
    stack: Any, clients: Any, alice: User, bob: User
) -> None:
    # A fresh id: revoking writes shares/{id}, which other tests on this emulator must not meet.
    shared = seed(clients, alice, "completed", shareId=secrets.token_urlsafe(16))
    with pytest.raises(Denied):
        as_user(stack, bob).request(shared, bob.uid, RequestAction.REVOKE_SHARE)
    as_user(stack, alice).request(shared, alice.uid, RequestAction.REVOKE_SHARE)
    for job_id in (seed(clients, alice, "completed"), seed(clients, alice, "generating-video")):
        with pytest.raises(Denied):
            as_user(stack, alice).request(job_id, alice.uid, RequestAction.REVOKE_SHARE)


def test_share_ids_cannot_be_listed_or_probed_by_anyone(
    stack: Any, clients: Any, alice: User, bob: User
) -> None:
    # A share the server wrote for alice's job: neither she nor bob may list shares (which would
    # enumerate ids) or read one by its id; only the `share` function answers for an id.
    share_id = secrets.token_urlsafe(16)
    clients.db.collection(SHARES).document(share_id).set(
        {"userId": alice.uid, "jobId": "any", "videoPath": f"greeting-results/{alice.uid}/any.mp4"}
    )
    events = f"{SHARES}/{share_id}/events"
    clients.db.collection(events).document("e1").set({"type": "played", "userId": alice.uid})
    for who in (alice, bob):
        for ask in (
            lambda user=who: as_user(stack, user).list_mine(SHARES, user.uid),
            lambda user=who: as_user(stack, user).get(SHARES, share_id),
            lambda user=who: as_user(stack, user).get(events, "e1"),
        ):
            with pytest.raises(Denied) as refused:
                ask()
            assert refused.value.status == 403


def test_other_user_cannot_cancel(stack: Any, clients: Any, alice: User, bob: User) -> None:
    job_id = seed(clients, alice, "queued")
    with pytest.raises(Denied):
        as_user(stack, bob).request(job_id, bob.uid, RequestAction.CANCEL)


def test_request_for_someone_else_refused(stack: Any, clients: Any, alice: User, bob: User) -> None:
    job_id = seed(clients, alice, "queued")
    with pytest.raises(Denied):  # bob names himself, but the job is alice's
        as_user(stack, bob).request(job_id, bob.uid, RequestAction.CANCEL)
    with pytest.raises(Denied):  # bob claims to be alice
        as_user(stack, bob).request(job_id, alice.uid, RequestAction.CANCEL)


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "delete"},
        {"action": "cancel", "outcome": "cancelled"},
        {"action": "retry", "retryCount": 0},
    ],
)
def test_request_with_other_fields_refused(
    stack: Any, clients: Any, alice: User, fields: dict[str, Any]
) -> None:
    job_id = seed(clients, alice, "failed")
    with pytest.raises(Denied):
        as_user(stack, alice).create(
            f"{COLLECTION}/{job_id}/{REQUESTS}",
            uuid.uuid4().hex,
            {**fields, "userId": alice.uid},
            ("createdAt",),
        )


def test_requests_readable_only_by_their_owner(
    stack: Any, clients: Any, alice: User, bob: User
) -> None:
    job_id = seed(clients, alice, "queued")
    request_id = as_user(stack, alice).request(job_id, alice.uid, RequestAction.CANCEL)
    path = f"{COLLECTION}/{job_id}/{REQUESTS}"
    assert as_user(stack, alice).get(path, request_id)["action"] == "cancel"
    with pytest.raises(Denied):
        as_user(stack, bob).get(path, request_id)


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "completed"},
        {"downloadUrl": "https://evil.example/x.mp4"},
        {"status": "cancelled"},
        {"status": "pending", "retryCount": 0},
        {"prospectName": "Renamed"},
        {"userId": "someone-else"},
    ],
)
def test_update_of_other_fields_refused(
    stack: Any, clients: Any, alice: User, fields: dict[str, Any]
) -> None:
    job_id = seed(clients, alice, "queued")
    with pytest.raises(Denied):
        as_user(stack, alice).update(COLLECTION, job_id, fields)


# --- delete and other collections ------------------------------------------------------------


def test_owner_deletes_finished_job(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "completed")
    as_user(stack, alice).delete(COLLECTION, job_id)
    assert not clients.db.collection(COLLECTION).document(job_id).get().exists


def test_running_job_cannot_be_deleted(stack: Any, clients: Any, alice: User) -> None:
    job_id = seed(clients, alice, "generating-video")
    with pytest.raises(Denied):
        as_user(stack, alice).delete(COLLECTION, job_id)


def test_other_collections_denied(stack: Any, alice: User) -> None:
    with pytest.raises(Denied):
        as_user(stack, alice).create("users", alice.uid, {"name": "x"}, ())


def test_a_user_can_neither_fill_nor_read_their_own_allowance(
    stack: Any, clients: Any, alice: User
) -> None:
    # userQuotas/{uid}: the trigger's token bucket (triggers/quota.py), the server's alone.
    with pytest.raises(Denied):
        as_user(stack, alice).create("userQuotas", alice.uid, {"tokens": 10_000}, ())
    clients.db.collection("userQuotas").document(alice.uid).set({"tokens": 1})
    with pytest.raises(Denied):
        as_user(stack, alice).get("userQuotas", alice.uid)
    with pytest.raises(Denied):
        as_user(stack, alice).update("userQuotas", alice.uid, {"tokens": 10_000})


# --- greetingBatches: a user lists their own batch's jobs, once ----------------------------------


def batch_fields(user: User, **overrides: Any) -> dict[str, Any]:
    return {"userId": user.uid, "jobIds": ["job-a", "job-b"], **overrides}


def test_owner_creates_and_reads_a_batch(stack: Any, alice: User) -> None:
    batch_id = f"rules-{uuid.uuid4().hex[:16]}"
    as_user(stack, alice).create(BATCHES, batch_id, batch_fields(alice), ("createdAt",))
    assert as_user(stack, alice).get(BATCHES, batch_id)["jobIds"] == ["job-a", "job-b"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"userId": "someone-else"},
        {"jobIds": []},
        {"jobIds": "job-a"},
        {"jobIds": [f"job-{i}" for i in range(401)]},
        {"flowRunId": "forged"},
    ],
)
def test_bad_batches_refused(stack: Any, alice: User, overrides: dict[str, Any]) -> None:
    with pytest.raises(Denied):
        as_user(stack, alice).create(
            BATCHES,
            f"rules-{uuid.uuid4().hex[:16]}",
            batch_fields(alice, **overrides),
            ("createdAt",),
        )


def test_batch_not_readable_or_rewritable_by_others(stack: Any, alice: User, bob: User) -> None:
    batch_id = f"rules-{uuid.uuid4().hex[:16]}"
    as_user(stack, alice).create(BATCHES, batch_id, batch_fields(alice), ("createdAt",))
    with pytest.raises(Denied):
        as_user(stack, bob).get(BATCHES, batch_id)
    with pytest.raises(Denied):
        as_user(stack, alice).update(BATCHES, batch_id, {"jobIds": ["job-c"]})


# --- fitChecks/{checkId}: asked by the owner, answered by the server -------------------------


def new_check(user: User, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "userId": user.uid,
        "inputVideo": f"user-uploads/{user.uid}/abc123.mp4",
        "voiceId": "piper:joe",
        "prospects": [{"prospectName": "Jane Doe"}, {"prospectName": "Al Li"}],
        "greetingEndSecond": 1.5,
        "status": "pending",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not _DROP}


def seed_check(clients: Any, owner: User) -> str:
    """A check as the server leaves it: answered (written with admin rights)."""
    check_id = f"rules-{uuid.uuid4().hex[:16]}"
    answered = new_check(owner, status="done", results=[], counts={"fits": 2})
    clients.db.collection(FIT_CHECKS).document(check_id).set(answered)
    return check_id


def test_owner_asks_a_fit_check_and_reads_the_answer(
    stack: Any, clients: Any, alice: User, bob: User
) -> None:
    check_id = f"rules-{uuid.uuid4().hex[:16]}"
    as_user(stack, alice).create(FIT_CHECKS, check_id, new_check(alice), ("createdAt",))
    answered = seed_check(clients, alice)
    assert as_user(stack, alice).get(FIT_CHECKS, answered)["counts"] == {"fits": 2}
    with pytest.raises(Denied):
        as_user(stack, bob).get(FIT_CHECKS, answered)
    with pytest.raises(Denied):
        as_user(stack, None).get(FIT_CHECKS, answered)


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("another user's video", {"inputVideo": "user-uploads/someone-else/abc123.mp4"}),
        ("answered already", {"status": "done"}),
        ("a forged answer", {"results": [{"prospectName": "x", "verdict": "fits"}]}),
        ("no names", {"prospects": []}),
        ("401 names", {"prospects": [{"prospectName": f"N{i}"} for i in range(401)]}),
        ("names not a list", {"prospects": "Jane Doe"}),
        ("a voice id with a path", {"voiceId": "../../v1/voices"}),
        ("greeting end past 10 s", {"greetingEndSecond": 11}),
        ("no video", {"inputVideo": _DROP}),
    ],
)
def test_fit_check_create_refused(
    stack: Any, alice: User, case: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(Denied):
        as_user(stack, alice).create(
            FIT_CHECKS, f"rules-{uuid.uuid4().hex[:16]}", new_check(alice, **overrides),
            ("createdAt",),
        )  # fmt: skip


def test_fit_check_for_another_user_refused(stack: Any, alice: User, bob: User) -> None:
    with pytest.raises(Denied):
        as_user(stack, bob).create(
            FIT_CHECKS, f"rules-{uuid.uuid4().hex[:16]}", new_check(alice), ("createdAt",)
        )


def test_the_owner_cannot_write_the_answer(stack: Any, clients: Any, alice: User) -> None:
    check_id = seed_check(clients, alice)
    with pytest.raises(Denied):
        as_user(stack, alice).update(FIT_CHECKS, check_id, {"counts": {"fits": 400}})
    as_user(stack, alice).delete(FIT_CHECKS, check_id)  # but may delete it
    assert not clients.db.collection(FIT_CHECKS).document(check_id).get().exists
