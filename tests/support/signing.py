"""Checking a V4 signed URL as the local storage proxy (and Cloud Storage) would."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

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
