"""The upload URL's pieces without the stack: the callable's checks and the proxy's V4 check.

The URL is signed by google-cloud-storage, as the trigger signs it, and checked by the local
Storage proxy the way Cloud Storage checks it: these tests make sure the proxy refuses what
Storage would refuse (another object, another content type, an expired or forged signature).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import pytest
import uploads  # from triggers/, as the Functions runtime imports it
from google.cloud import storage
from google.oauth2 import service_account

from greetings.stack.storage_proxy import (
    TOKEN_PATH,
    Refused,
    ensure_token_uri,
    generate_signer_key,
    make_server,
)
from tests.support.signing import assert_token_kept_until_it_expires, check_signed

SHA = "ab" * 32
ENDPOINT = "http://127.0.0.1:9198"


def good(**overrides: Any) -> dict[str, Any]:
    return {
        "fileName": "pitch.MP4",
        "contentType": "video/mp4",
        "size": 1234,
        "sha256": SHA,
        **overrides,
    }


# --- the callable's request ----------------------------------------------------------------


def test_valid_request_names_the_users_folder_by_content() -> None:
    request = uploads.parse_request(good())
    assert uploads.object_path("uid-1", request) == f"user-uploads/uid-1/{SHA}.mp4"


@pytest.mark.parametrize("file_name", ["../../etc/passwd", "clip", "a.mp4;rm -rf", "x.toolongext1"])
def test_file_name_never_shapes_the_path_beyond_a_plain_extension(file_name: str) -> None:
    path = uploads.object_path("uid-1", uploads.parse_request(good(fileName=file_name)))
    assert path.startswith(f"user-uploads/uid-1/{SHA}")
    assert ".." not in path and ";" not in path and path.count("/") == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contentType": "text/html"}, "only videos"),
        ({"contentType": "video/mp4\r\nX-Evil: 1"}, "only videos"),
        ({"size": 0}, "positive"),
        ({"size": True}, "positive"),
        ({"size": "12"}, "positive"),
        ({"size": 501 * 1024 * 1024}, "limit is 500 MB"),
        ({"sha256": "AB" * 32}, "SHA-256"),
        ({"sha256": "ab" * 31}, "SHA-256"),
        ({"fileName": ""}, "fileName"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(uploads.UploadRefused, match=message):
        uploads.parse_request(good(**overrides))


def test_not_an_object_is_refused() -> None:
    with pytest.raises(uploads.UploadRefused):
        uploads.parse_request(["not", "a", "dict"])


# --- signing and checking -------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signer") / "key.json"
    generate_signer_key(path, "demo-test")
    return path


def signed_url(
    key_file: Path, name: str = f"user-uploads/u/{SHA}.mp4"
) -> tuple[str, dict[str, str]]:
    credentials = service_account.Credentials.from_service_account_file(str(key_file))  # type: ignore[no-untyped-call]
    blob = storage.Client(project="demo-test", credentials=credentials).bucket("b").blob(name)
    request = uploads.parse_request(good())
    headers = uploads.upload_headers(request)
    url = blob.generate_signed_url(
        version="v4",
        method="PUT",
        expiration=timedelta(minutes=30),
        headers=dict(headers),
        credentials=credentials,
        api_access_endpoint=ENDPOINT,
    )
    return url, headers


def test_a_signed_url_passes_the_check(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    check_signed(key_file, url, headers)


def test_another_object_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url.replace(f"/{SHA}.mp4", "/other.mp4"), headers)


def test_another_content_type_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url, {**headers, "Content-Type": "text/html"})


def test_another_method_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url, headers, method="GET")


def test_a_missing_signed_header_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="not sent"):
        check_signed(key_file, url, {"Content-Type": headers["Content-Type"]})


def test_an_expired_url_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="expired"):
        check_signed(key_file, url, headers, now=datetime.now(UTC) + timedelta(minutes=31))


def test_a_longer_lifetime_written_into_the_url_fails(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url.replace("X-Goog-Expires=1800", "X-Goog-Expires=999999"), headers)


def test_another_key_fails(key_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    generate_signer_key(other, "demo-test")
    url, headers = signed_url(other)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url, headers)


# --- no overwriting -------------------------------------------------------------------------


class FakeBlob:
    """A blob that is not there yet and records what it is asked to sign."""

    name = f"user-uploads/u/{SHA}.mp4"

    def __init__(self) -> None:
        self.signed: dict[str, Any] = {}

    def exists(self) -> bool:
        return False

    def generate_signed_url(self, **kwargs: Any) -> str:
        self.signed = kwargs
        return "https://signed.example/put"


def test_the_upload_may_only_create_its_object() -> None:
    blob = FakeBlob()
    answer = uploads.upload_answer(blob, uploads.parse_request(good()), {})
    # The page sends exactly these headers, and the signature covers exactly these.
    assert answer["headers"]["x-goog-if-generation-match"] == "0"
    assert blob.signed["headers"]["x-goog-if-generation-match"] == "0"
    assert blob.signed["method"] == "PUT"


def test_the_precondition_is_part_of_the_signature(key_file: Path) -> None:
    url, headers = signed_url(key_file)
    signed = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert "x-goog-if-generation-match" in signed["X-Goog-SignedHeaders"].split(";")
    # Left out, or changed to another generation, the PUT does not match its signature.
    without = {k: v for k, v in headers.items() if k != "x-goog-if-generation-match"}
    with pytest.raises(Refused, match="not sent"):
        check_signed(key_file, url, without)
    with pytest.raises(Refused, match="signature"):
        check_signed(key_file, url, {**headers, "x-goog-if-generation-match": "7"})


# --- the proxy's token endpoint: what google-auth's service-account credentials need -----------


@pytest.fixture
def token_proxy(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The proxy on a free port, and a key whose token_uri is its /_token."""
    key = tmp_path / "key.json"
    generate_signer_key(key, "demo-test")
    server = make_server("127.0.0.1", 0, "http://127.0.0.1:9", key, [])
    token_uri = f"http://127.0.0.1:{server.server_address[1]}{TOKEN_PATH}"
    ensure_token_uri(key, token_uri)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield key, token_uri
    finally:
        server.shutdown()
        server.server_close()


def test_the_stack_key_gets_an_access_token(token_proxy: tuple[Path, str]) -> None:
    key, _ = token_proxy
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(key), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.valid and credentials.token.startswith("local-stack.")


def test_another_key_gets_no_token(token_proxy: tuple[Path, str], tmp_path: Path) -> None:
    _, token_uri = token_proxy
    stranger = tmp_path / "stranger.json"
    generate_signer_key(stranger, "demo-test", token_uri)  # same account name, another key
    credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(stranger), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    with pytest.raises(google.auth.exceptions.RefreshError, match="Invalid JWT Signature"):
        credentials.refresh(google.auth.transport.requests.Request())


def test_the_signing_token_is_refreshed_when_it_expires_not_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import service_token  # from triggers/, as the Functions runtime imports it

    assert_token_kept_until_it_expires(
        monkeypatch,
        service_token.google.auth,
        service_token._credentials,
        service_token.service_token,
    )
