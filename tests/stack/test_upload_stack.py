"""The web page's upload path against the running stack: the callable, then the signed PUT.

The requests are the ones the page makes (the Functions SDK's callable protocol with the user's
ID token, then an XMLHttpRequest PUT with the returned headers), so what passes here is what a
browser gets, CORS included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import User


def call_upload_url(stack: Any, user: User | None, data: dict[str, Any]) -> requests.Response:
    s = stack.s
    headers = {"Origin": s.web_url}
    if user is not None:
        headers["Authorization"] = f"Bearer {user.id_token}"
    return requests.post(
        f"http://{s.host}:{s.functions_port}/{s.project_id}/us-central1/create_upload_url",
        json={"data": data},
        headers=headers,
        timeout=60,
    )


def describe(video: Path) -> dict[str, Any]:
    body = video.read_bytes()
    return {
        "fileName": video.name,
        "contentType": "video/mp4",
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_signed_upload_stores_the_video_once(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    user = make_user()
    response = call_upload_url(stack, user, describe(sample_video))
    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == stack.s.web_url
    answer = response.json()["result"]
    sha = describe(sample_video)["sha256"]
    assert answer["path"] == f"user-uploads/{user.uid}/{sha}.mp4"
    assert answer["exists"] is False
    assert set(answer["headers"]) == {
        "Content-Type",
        "x-goog-content-length-range",
        "x-goog-if-generation-match",
    }

    preflight = requests.options(
        answer["uploadUrl"],
        headers={
            "Origin": stack.s.web_url,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,x-goog-content-length-range",
        },
        timeout=10,
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") == stack.s.web_url
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]

    put = requests.put(
        answer["uploadUrl"],
        data=sample_video.read_bytes(),
        headers={**answer["headers"], "Origin": stack.s.web_url},
        timeout=60,
    )
    assert put.status_code == 200, put.text
    assert put.headers["Access-Control-Allow-Origin"] == stack.s.web_url
    assert clients.bucket.blob(answer["path"]).download_as_bytes() == sample_video.read_bytes()

    again = call_upload_url(stack, user, describe(sample_video)).json()["result"]
    assert (again["exists"], again["path"], again["uploadUrl"]) == (True, answer["path"], None)

    # The same signed URL cannot replace what was stored: Storage's if-generation-match: 0.
    overwrite = requests.put(
        answer["uploadUrl"],
        data=b"\0" * len(sample_video.read_bytes()),
        headers=answer["headers"],
        timeout=60,
    )
    assert overwrite.status_code == 412 and "PreconditionFailed" in overwrite.text
    assert clients.bucket.blob(answer["path"]).download_as_bytes() == sample_video.read_bytes()


def test_proxy_refuses_anonymous_listing_and_reads(stack: Any, sample_video: Path) -> None:
    proxy, bucket = stack.s.storage_proxy_url, stack.s.default_bucket
    for path in (f"/{bucket}", f"/storage/v1/b/{bucket}/o", f"/{bucket}/user-uploads/x.mp4"):
        response = requests.get(proxy + path, timeout=10)
        assert response.status_code in (401, 403), (path, response.status_code)


def test_signed_url_cannot_carry_other_bytes_or_type(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    user = make_user()
    answer = call_upload_url(stack, user, describe(sample_video)).json()["result"]
    body = sample_video.read_bytes()
    longer = requests.put(
        answer["uploadUrl"], data=body + b"x", headers=answer["headers"], timeout=60
    )
    assert longer.status_code == 400 and "EntityTooLarge" in longer.text
    html = requests.put(
        answer["uploadUrl"],
        data=body,
        headers={**answer["headers"], "Content-Type": "text/html"},
        timeout=60,
    )
    assert html.status_code == 403 and "SignatureDoesNotMatch" in html.text
    assert not clients.bucket.blob(answer["path"]).exists()


def test_other_origins_get_no_cors_answer(
    stack: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    answer = call_upload_url(stack, make_user(), describe(sample_video)).json()["result"]
    preflight = requests.options(
        answer["uploadUrl"],
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


@pytest.mark.parametrize(
    ("user_kind", "overrides", "status", "message"),
    [
        ("none", {}, "UNAUTHENTICATED", "sign in"),
        ("user", {"contentType": "application/pdf"}, "INVALID_ARGUMENT", "only videos"),
        ("user", {"size": 600 * 1024 * 1024}, "INVALID_ARGUMENT", "limit is 500 MB"),
    ],
)
def test_callable_refusals_say_why(
    stack: Any,
    make_user: Callable[[], User],
    sample_video: Path,
    user_kind: str,
    overrides: dict[str, Any],
    status: str,
    message: str,
) -> None:
    user = make_user() if user_kind == "user" else None
    response = call_upload_url(stack, user, {**describe(sample_video), **overrides})
    assert response.status_code in (400, 401)
    error = response.json()["error"]
    assert error["status"] == status
    assert message in error["message"]
