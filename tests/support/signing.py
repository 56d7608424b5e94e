"""Checking a V4 signed URL as the local storage proxy (and Cloud Storage) would."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from greetings.stack.storage_proxy import verify_v4


def check_signed(
    key_file: Path,
    url: str,
    headers: dict[str, str],
    method: str = "PUT",
    now: datetime | None = None,
) -> None:
    info = json.loads(key_file.read_text())
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    split = urllib.parse.urlsplit(url)
    verify_v4(
        private.public_key(),
        info["client_email"],
        method,
        split.path,
        dict(urllib.parse.parse_qsl(split.query)),
        {**headers, "Host": split.netloc},
        now or datetime.now(UTC),
    )


SERVICE_ACCOUNT = "runtime@project.iam.gserviceaccount.com"


class ExpiringCredentials:
    """What google.auth.default() gives code on Cloud Run: a token that expires."""

    def __init__(self) -> None:
        self.service_account_email = SERVICE_ACCOUNT
        self.token: str | None = None
        self.valid = False
        self.refreshes = 0

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        self.token, self.valid = f"token-{self.refreshes}", True


def assert_token_kept_until_it_expires(
    monkeypatch: Any,
    auth: Any,
    cached: Any,
    access: Callable[[], tuple[str | None, str | None]],
) -> None:
    """`access()` (account, token) makes its credentials once (`auth.default`, memoized by
    `cached`) and refreshes the token only once it is no longer valid."""
    credentials = ExpiringCredentials()
    made: list[int] = []
    monkeypatch.setattr(auth, "default", lambda: made.append(1) or (credentials, "project"))
    cached.cache_clear()
    try:
        assert [access() for _ in range(3)] == [(SERVICE_ACCOUNT, "token-1")] * 3
        assert credentials.refreshes == 1 and len(made) == 1
        credentials.valid = False  # expired (or about to: google.auth's margin)
        assert access() == (SERVICE_ACCOUNT, "token-2")
        assert credentials.refreshes == 2 and len(made) == 1
    finally:
        cached.cache_clear()
