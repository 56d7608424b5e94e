"""flows/storage.py without Storage: an upload's bytes checked against the SHA-256 its name
carries, and results' download URLs against the Storage emulator (signed for the stack's proxy).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from flows import storage as object_store
from flows.job import ErrorCode, JobError
from flows.settings import Settings
from greetings.stack.storage_proxy import Refused, generate_signer_key
from tests.support.signing import assert_token_kept_until_it_expires, check_signed

BODY = b"\x00\x00\x00\x18ftypmp42 a video's bytes"
SHA = hashlib.sha256(BODY).hexdigest()
BUCKET = "demo-test.appspot.com"


# --- which names promise a hash -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [f"user-uploads/u1/{SHA}.mp4", f"user-uploads/u1/{SHA}.webm", f"user-uploads/u1/{SHA}"],
)
def test_a_content_addressed_name_promises_its_hash(path: str) -> None:
    assert object_store.expected_sha256(path) == SHA


@pytest.mark.parametrize(
    "path",
    [
        "user-uploads/u1/pitch.mp4",
        f"user-uploads/u1/{SHA.upper()}.mp4",
        f"user-uploads/u1/{SHA[:32]}.mp4",  # the stack tests' own names
        f"user-uploads/u1/{SHA}0.mp4",
        f"user-uploads/u1/{SHA}.mp4.mov",
        f"user-uploads/{SHA}/video.mp4",  # a hash elsewhere in the path is no promise
    ],
)
def test_other_names_promise_nothing(path: str) -> None:
    assert object_store.expected_sha256(path) is None


def test_matching_bytes_pass() -> None:
    object_store.check_sha256(f"user-uploads/u1/{SHA}.mp4", SHA)


def test_other_bytes_are_refused_for_good_with_what_to_do() -> None:
    with pytest.raises(JobError) as refused:
        object_store.check_sha256(f"user-uploads/u1/{SHA}.mp4", hashlib.sha256(b"x").hexdigest())
    assert refused.value.code == ErrorCode.INPUT_MISMATCH
    assert refused.value.retryable is False
    assert "upload the video again" in refused.value.message


def test_a_name_without_a_hash_is_never_refused() -> None:
    object_store.check_sha256("user-uploads/u1/pitch.mp4", hashlib.sha256(b"x").hexdigest())


# --- the download, as the worker makes it ---------------------------------------------------


@dataclass
class FakeBlob:
    """A stored object whose download writes `data` (what Storage holds, whatever its name)."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def download_to_filename(self, filename: str, timeout: float) -> None:
        Path(filename).write_bytes(self.data)


@dataclass
class FakeBucket:
    objects: dict[str, bytes]

    def get_blob(self, path: str, timeout: float) -> FakeBlob | None:
        data = self.objects.get(path)
        return None if data is None else FakeBlob(data)


def download(tmp_path: Path, path: str, stored: bytes) -> Path:
    bucket: Any = FakeBucket({path: stored})
    return object_store.download_input(bucket, path, tmp_path / "input", lambda size: None)


def test_an_upload_that_is_its_name_is_kept(tmp_path: Path) -> None:
    local = download(tmp_path, f"user-uploads/u1/{SHA}.mp4", BODY)
    assert local.read_bytes() == BODY


def test_an_upload_that_is_not_its_name_is_refused_and_removed(tmp_path: Path) -> None:
    with pytest.raises(JobError) as refused:
        download(tmp_path, f"user-uploads/u1/{SHA}.mp4", BODY + b"tampered")
    assert refused.value.code == ErrorCode.INPUT_MISMATCH
    assert list(tmp_path.iterdir()) == []


def test_an_upload_named_otherwise_is_taken_as_it_is(tmp_path: Path) -> None:
    local = download(tmp_path, "user-uploads/u1/pitch.mp4", b"anything at all")
    assert local.read_bytes() == b"anything at all"


def test_verify_download_hashes_the_whole_file(tmp_path: Path) -> None:
    # More than one read's worth, so a hash of the first chunk alone would pass wrongly.
    big = bytes(range(256)) * (object_store.HASH_CHUNK // 256 + 10)
    local = tmp_path / "big"
    local.write_bytes(big + b"!")
    name = f"user-uploads/u1/{hashlib.sha256(big).hexdigest()}.mp4"
    with pytest.raises(JobError):
        object_store.verify_download(name, local)
    assert not local.exists()
    local.write_bytes(big)
    object_store.verify_download(name, local)
    assert local.exists()


# --- results' download URLs against the emulator --------------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signer") / "key.json"
    generate_signer_key(path, "demo-test")
    return path


def result_blob() -> storage.Blob:
    client = storage.Client(project="demo-test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return client.bucket(BUCKET).blob("greeting-results/u1/job 1.mp4")


def test_with_the_stacks_key_the_url_is_signed_for_the_proxy(key_file: Path) -> None:
    url = object_store.emulator_download_url(
        result_blob(), "http://127.0.0.1:9198", "http://127.0.0.1:9199", key_file
    )
    split = urllib.parse.urlsplit(url)
    assert split.netloc == "127.0.0.1:9198"
    assert urllib.parse.unquote(split.path) == f"/{BUCKET}/greeting-results/u1/job 1.mp4"
    assert dict(urllib.parse.parse_qsl(split.query))["X-Goog-Expires"] == "604800"
    check_signed(key_file, url, {}, method="GET")
    with pytest.raises(Refused):
        check_signed(key_file, url, {}, method="PUT")


def test_in_the_stack_without_a_key_no_unsigned_url_is_handed_out() -> None:
    with pytest.raises(JobError) as refused:
        object_store.emulator_download_url(
            result_blob(), "http://127.0.0.1:9198", "http://127.0.0.1:9199", None
        )
    assert "GREETINGS_STORAGE_SIGNER_KEY_FILE" in refused.value.message


def test_against_a_bare_emulator_without_a_key_the_media_url_stays() -> None:
    url = object_store.emulator_download_url(result_blob(), "", "http://127.0.0.1:9199", None)
    assert url == (
        f"http://127.0.0.1:9199/download/storage/v1/b/{BUCKET}/o/"
        "greeting-results%2Fu1%2Fjob%201.mp4?alt=media"
    )


def test_download_url_takes_the_key_from_the_workers_settings(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9199")
    monkeypatch.setattr(
        object_store, "get_settings", lambda: Settings(storage_signer_key_file=key_file)
    )
    url = object_store.download_url(result_blob(), "http://127.0.0.1:9198")
    assert "X-Goog-Signature=" in url
    check_signed(key_file, url, {}, method="GET")


def test_the_key_setting_comes_from_the_environment(
    key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREETINGS_STORAGE_SIGNER_KEY_FILE", str(key_file))
    assert Settings().storage_signer_key_file == key_file
    monkeypatch.delenv("GREETINGS_STORAGE_SIGNER_KEY_FILE")
    assert Settings(_env_file=None).storage_signer_key_file is None  # type: ignore[call-arg]


def test_signing_access_refreshes_the_token_when_it_expires_not_per_video(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert_token_kept_until_it_expires(
        monkeypatch,
        object_store.google.auth,
        object_store._default_credentials,
        object_store.signing_access,
    )
