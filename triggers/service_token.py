"""The Function's service account and an access token for IAM-signed URLs (upload URLs, share
pages' media links), refreshed when it expires.

`google.auth.default()` makes new credentials on every call, and `refresh` fetches a token from
the metadata server: once per upload URL or share-page view before. A token lives an hour and a
Function instance serves many requests, so it is kept and refreshed only when google.auth says it
is no longer valid (with its margin before expiry). The worker has the same in flows/storage.py;
this package is deployed on its own and cannot import it.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import google.auth
import google.auth.transport.requests

_guard = threading.Lock()


@cache
def _credentials() -> Any:
    credentials, _ = google.auth.default()
    return credentials


def service_token() -> tuple[str | None, str | None]:
    """The service account's email and a current access token."""
    with _guard:
        credentials = _credentials()
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return getattr(credentials, "service_account_email", None), credentials.token
