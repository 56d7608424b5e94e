"""The local Storage proxy as a browser, the CLI and the tests meet it, against a stub emulator.

The proxy runs for real (greetings/stack/storage_proxy.py on a free port) in front of a small
HTTP server that speaks the few gcp-storage-emulator routes it uses and records every request, so
these tests see both what a caller gets and what reaches Storage behind the proxy: an overwrite
refused before any byte is stored, anonymous reads and listings refused before they are
forwarded, a signed read served.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import uploads  # from triggers/, as the Functions runtime imports it
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from flows.storage import emulator_download_url
from greetings.stack.storage_proxy import (
    Refused,
    generate_signer_key,
    generation_match,
    make_server,
    precondition_holds,
    read_target,
)

BUCKET = "demo-test.appspot.com"
BODY = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
SHA = hashlib.sha256(BODY).hexdigest()
UPLOAD = f"user-uploads/u1/{SHA}.mp4"
RESULT = "greeting-results/u1/job-1.mp4"


# --- a stub of the emulator's routes the proxy uses ----------------------------------------


@dataclass
class Emulator:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)


class EmulatorHandler(BaseHTTPRequestHandler):
    state: ClassVar[Emulator]
    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.state.requests.append(("GET", self.path))
        split = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in split.path.split("/")]
        if split.path == "/":
            self._answer(200, b"OK")
        elif split.path.startswith("/storage/v1/b/") and len(parts) == 7 and parts[5] == "o":
            if (parts[4], parts[6]) in self.state.objects:
                meta = {"name": parts[6], "bucket": parts[4], "generation": "1700000000000001"}
                self._answer(200, json.dumps(meta).encode(), Content_Type="application/json")
            else:
                self._answer(404, b'{"error": {"code": 404}}')
        elif split.path.startswith("/download/storage/v1/b/") and len(parts) == 8:
            data = self.state.objects.get((parts[5], parts[7]))
            if data is None:
                self._answer(404)
                return
            wanted = self.headers.get("Range")
            if wanted:
                start, _, end = wanted.removeprefix("bytes=").partition("-")
                last = int(end) if end else len(data) - 1
                span = f"bytes {start}-{last}/{len(data)}"
                self._answer(206, data[int(start) : last + 1], Content_Range=span)
            else:
                self._answer(200, data, Content_Type="video/mp4")
        else:
            # What the real emulator would give anyone: here it marks a request that got through.
            self._answer(200, b'{"items": ["everything"]}')

    def do_POST(self) -> None:
        self.state.requests.append(("POST", self.path))
        split = urllib.parse.urlsplit(self.path)
        bucket = urllib.parse.unquote(split.path.split("/")[5])
        name = dict(urllib.parse.parse_qsl(split.query))["name"]
        length = int(self.headers["Content-Length"])
        self.state.objects[(bucket, name)] = self.rfile.read(length)
        self._answer(200, b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Proxied:
    url: str
    emulator: Emulator
    key_file: Path

    def forwarded(self) -> list[tuple[str, str]]:
        """What reached the emulator, apart from the proxy's own metadata reads."""
        return [r for r in self.emulator.requests if not r[1].startswith("/storage/v1/b/")]


def _run(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signer") / "key.json"
    generate_signer_key(path, "demo-test")
    return path


@pytest.fixture
def proxied(key_file: Path) -> Iterator[Proxied]:
    state = Emulator()

    class Handler(EmulatorHandler):
        pass

    Handler.state = state
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    upstream.daemon_threads = True
    _run(upstream)
    proxy = make_server(
        "127.0.0.1",
        0,
        f"http://127.0.0.1:{upstream.server_address[1]}",
        key_file,
        ["http://127.0.0.1:5005"],
    )
    _run(proxy)
    try:
        yield Proxied(f"http://127.0.0.1:{proxy.server_address[1]}", state, key_file)
    finally:
        proxy.shutdown()
        upstream.shutdown()
        proxy.server_close()
        upstream.server_close()


def blob(key_file: Path, name: str) -> storage.Blob:
    credentials = service_account.Credentials.from_service_account_file(str(key_file))  # type: ignore[no-untyped-call]
    return storage.Client(project="demo-test", credentials=credentials).bucket(BUCKET).blob(name)


def signed_put(
    proxied: Proxied, name: str = UPLOAD, conditional: bool = True
) -> tuple[str, dict[str, str]]:
    """A PUT URL as the trigger signs it (triggers/uploads.py), and the headers the page sends."""
    request = uploads.parse_request(
        {"fileName": "pitch.mp4", "contentType": "video/mp4", "size": len(BODY), "sha256": SHA}
    )
    headers = uploads.upload_headers(request)
    if not conditional:
        del headers["x-goog-if-generation-match"]
    url = blob(proxied.key_file, name).generate_signed_url(
        version="v4",
        method="PUT",
        expiration=timedelta(minutes=30),
        headers=dict(headers),
        credentials=service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(proxied.key_file)
        ),
        api_access_endpoint=proxied.url,
    )
    return url, headers


def signed_get(proxied: Proxied, name: str = RESULT) -> str:
    """A result's downloadUrl, as the worker signs it against the stack (flows/storage.py)."""
    anonymous = storage.Client(project="demo-test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    return emulator_download_url(
        anonymous.bucket(BUCKET).blob(name), proxied.url, "http://unused", proxied.key_file
    )


# --- uploads: created once, never overwritten -----------------------------------------------


def test_a_signed_upload_is_stored(proxied: Proxied) -> None:
    url, headers = signed_put(proxied)
    response = requests.put(url, data=BODY, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert proxied.emulator.objects[(BUCKET, UPLOAD)] == BODY


def test_an_upload_over_an_existing_object_is_refused(proxied: Proxied) -> None:
    proxied.emulator.objects[(BUCKET, UPLOAD)] = BODY
    url, headers = signed_put(proxied)
    other = bytes(reversed(BODY))  # the same size: the signature's length range lets it through
    response = requests.put(url, data=other, headers=headers, timeout=10)
    assert response.status_code == 412
    assert "<Code>PreconditionFailed</Code>" in response.text
    assert proxied.emulator.objects[(BUCKET, UPLOAD)] == BODY
    assert not [r for r in proxied.forwarded() if r[0] == "POST"]


def test_without_the_precondition_the_emulator_would_overwrite(proxied: Proxied) -> None:
    # The refusal above comes from the header, not from the stub: unconditioned, it overwrites.
    proxied.emulator.objects[(BUCKET, UPLOAD)] = BODY
    url, headers = signed_put(proxied, conditional=False)
    other = bytes(reversed(BODY))
    assert requests.put(url, data=other, headers=headers, timeout=10).status_code == 200
    assert proxied.emulator.objects[(BUCKET, UPLOAD)] == other


def test_the_page_may_send_the_precondition_header(proxied: Proxied) -> None:
    preflight = requests.options(
        f"{proxied.url}/{BUCKET}/{UPLOAD}",
        headers={
            "Origin": "http://127.0.0.1:5005",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,x-goog-content-length-range,"
            "x-goog-if-generation-match",
        },
        timeout=10,
    )
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "x-goog-if-generation-match" in allowed


@pytest.mark.parametrize(
    ("expected", "stored", "holds"),
    [(0, None, True), (0, 5, False), (5, 5, True), (5, 6, False), (5, None, False)],
)
def test_generation_preconditions(expected: int, stored: int | None, holds: bool) -> None:
    assert precondition_holds(expected, stored) is holds


def test_the_precondition_header_is_read_whatever_its_case() -> None:
    assert generation_match({"X-Goog-If-Generation-Match": "0"}) == 0
    assert generation_match({"Content-Type": "video/mp4"}) is None
    with pytest.raises(Refused, match="generation"):
        generation_match({"x-goog-if-generation-match": "-1"})


# --- reads: signed only, no listing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/storage/v1/b/{BUCKET}/o", 401),
        (f"/storage/v1/b/{BUCKET}/o?prefix=user-uploads/", 401),
        (f"/download/storage/v1/b/{BUCKET}/o", 401),
        (f"/b/{BUCKET}/o", 401),
        ("/storage/v1/b", 401),
        (f"/{BUCKET}", 403),
        (f"/{BUCKET}/?prefix=user-uploads/", 403),
        ("/", 403),
    ],
)
def test_anonymous_listing_is_refused(proxied: Proxied, path: str, status: int) -> None:
    response = requests.get(f"{proxied.url}{path}", timeout=10)
    assert response.status_code == status, response.text
    assert "storage.objects.list" in response.text or "storage.buckets.list" in response.text
    assert "everything" not in response.text
    assert proxied.emulator.requests == []


@pytest.mark.parametrize(
    "path",
    [
        f"/download/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(RESULT, safe='')}?alt=media",
        f"/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(RESULT, safe='')}?alt=media",
        f"/{BUCKET}/{RESULT}",
    ],
)
def test_an_unsigned_read_is_refused(proxied: Proxied, path: str) -> None:
    proxied.emulator.objects[(BUCKET, RESULT)] = BODY
    response = requests.get(f"{proxied.url}{path}", timeout=10)
    assert response.status_code in (401, 403), response.text
    assert "storage.objects.get" in response.text
    assert BODY not in response.content
    assert proxied.emulator.requests == []


def test_json_api_refusals_have_storage_json_shape(proxied: Proxied) -> None:
    response = requests.get(f"{proxied.url}/storage/v1/b/{BUCKET}/o", timeout=10)
    error = response.json()["error"]
    assert error["code"] == 401 and error["errors"][0]["reason"] == "required"


def test_a_signed_read_is_served_with_ranges(proxied: Proxied) -> None:
    proxied.emulator.objects[(BUCKET, RESULT)] = BODY
    url = signed_get(proxied)
    assert urllib.parse.urlsplit(url).path == f"/{BUCKET}/{RESULT}"
    whole = requests.get(url, timeout=10)
    assert whole.status_code == 200, whole.text
    assert whole.content == BODY
    # As a <video> element asks for it.
    part = requests.get(url, headers={"Range": "bytes=4-11"}, timeout=10)
    assert part.status_code == 206 and part.content == BODY[4:12]


def test_a_signed_read_of_another_object_is_refused(proxied: Proxied) -> None:
    proxied.emulator.objects[(BUCKET, RESULT)] = BODY
    proxied.emulator.objects[(BUCKET, UPLOAD)] = BODY
    url = signed_get(proxied).replace(f"/{RESULT}", f"/{UPLOAD}")
    response = requests.get(url, timeout=10)
    assert response.status_code == 403 and "SignatureDoesNotMatch" in response.text
    assert proxied.forwarded() == []


def test_an_upload_url_does_not_read(proxied: Proxied) -> None:
    proxied.emulator.objects[(BUCKET, UPLOAD)] = BODY
    url, _ = signed_put(proxied)
    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert proxied.forwarded() == []


def test_the_health_path_answers(proxied: Proxied) -> None:
    assert requests.get(f"{proxied.url}/_health", timeout=10).status_code == 200


def test_read_target_maps_a_signed_object_to_the_emulators_media_route(key_file: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    info = json.loads(key_file.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    anonymous = storage.Client(project="demo-test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    url = emulator_download_url(
        anonymous.bucket(BUCKET).blob(RESULT), "http://127.0.0.1:9198", "http://x", key_file
    )
    split = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(split.query))
    target = read_target(
        private.public_key(),
        info["client_email"],
        "GET",
        split.path,
        query,
        {"Host": split.netloc},
        datetime.now(UTC),
    )
    quoted = urllib.parse.quote(RESULT, safe="")
    assert target == f"/download/storage/v1/b/{BUCKET}/o/{quoted}?alt=media"
    with pytest.raises(Refused, match="expired"):
        read_target(
            private.public_key(),
            info["client_email"],
            "GET",
            split.path,
            query,
            {"Host": split.netloc},
            datetime.now(UTC) + timedelta(days=8),
        )
