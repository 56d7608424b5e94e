"""What an end user's client does, as the user: Firestore's REST API with the user's ID token.

Requests carry the user's token, so firestore.rules decide exactly as they do for a browser.
(The Python Firestore client in emulator mode always acts as admin; it cannot test the rules.)
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from flows.job import (
    BATCHES,
    COLLECTION,
    MAX_BATCH_JOBS,
    REQUESTS,
    BatchRequest,
    JobRequest,
    RequestAction,
)


def to_value(value: Any) -> dict[str, Any]:
    """A Python value as a Firestore REST `Value`."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"doubleValue": "NaN"}
        if math.isinf(value):
            return {"doubleValue": "Infinity" if value > 0 else "-Infinity"}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, datetime):
        return {"timestampValue": value.isoformat()}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {k: to_value(v) for k, v in value.items()}}}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [to_value(v) for v in value]}}
    raise TypeError(f"cannot store {type(value).__name__} in Firestore")


def from_value(value: dict[str, Any]) -> Any:
    """A Firestore REST `Value` as a Python value (timestamps stay ISO strings)."""
    kind, raw = next(iter(value.items()))
    if kind == "integerValue":
        return int(raw)
    if kind == "doubleValue":
        return float(raw)
    if kind == "mapValue":
        return {k: from_value(v) for k, v in raw.get("fields", {}).items()}
    if kind == "arrayValue":
        return [from_value(v) for v in raw.get("values", [])]
    return raw


class Denied(Exception):
    """Firestore refused the request (the rules, or a missing document)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass
class FirestoreAsUser:
    base_url: str  # e.g. http://127.0.0.1:8080/v1 or https://firestore.googleapis.com/v1
    project_id: str
    id_token: str | None
    timeout_s: float = 15.0

    @property
    def _root(self) -> str:
        return f"projects/{self.project_id}/databases/(default)/documents"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.id_token}"} if self.id_token else {}

    def _check(self, response: requests.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise Denied(response.status_code, message)
        return response.json() if response.content else None

    def commit(self, writes: list[dict[str, Any]]) -> Any:
        return self._check(
            requests.post(
                f"{self.base_url}/{self._root}:commit",
                json={"writes": writes},
                headers=self._headers(),
                timeout=self.timeout_s,
            )
        )

    def create(
        self, collection: str, doc_id: str, fields: dict[str, Any], server_time: tuple[str, ...]
    ) -> None:
        """Creates a document (never overwrites); `server_time` fields get the request time."""
        self.commit([self.create_write(collection, doc_id, fields, server_time)])

    def create_write(
        self, collection: str, doc_id: str, fields: dict[str, Any], server_time: tuple[str, ...]
    ) -> dict[str, Any]:
        """One write of a commit that creates a document (see `create`)."""
        return {
            "update": {
                "name": f"{self._root}/{collection}/{doc_id}",
                "fields": {k: to_value(v) for k, v in fields.items()},
            },
            "currentDocument": {"exists": False},
            "updateTransforms": [
                {"fieldPath": f, "setToServerValue": "REQUEST_TIME"} for f in server_time
            ],
        }

    def update(self, collection: str, doc_id: str, fields: dict[str, Any]) -> None:
        self.update_with_deletes(collection, doc_id, fields, ())

    def update_with_deletes(
        self, collection: str, doc_id: str, fields: dict[str, Any], deleted: Sequence[str]
    ) -> None:
        """Sets `fields` and removes the fields named in `deleted` (in the mask, not the body),
        in one write."""
        self.commit(
            [
                {
                    "update": {
                        "name": f"{self._root}/{collection}/{doc_id}",
                        "fields": {k: to_value(v) for k, v in fields.items()},
                    },
                    "updateMask": {"fieldPaths": [*fields, *deleted]},
                    "currentDocument": {"exists": True},
                }
            ]
        )

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        body = self._check(
            requests.get(
                f"{self.base_url}/{self._root}/{collection}/{doc_id}",
                headers=self._headers(),
                timeout=self.timeout_s,
            )
        )
        return {k: from_value(v) for k, v in body.get("fields", {}).items()}

    def delete(self, collection: str, doc_id: str) -> None:
        self._check(
            requests.delete(
                f"{self.base_url}/{self._root}/{collection}/{doc_id}",
                headers=self._headers(),
                timeout=self.timeout_s,
            )
        )

    def list_mine(self, collection: str, user_id: str) -> list[dict[str, Any]]:
        """The user's own documents (a query the rules can prove is limited to them)."""
        body = self._check(
            requests.post(
                f"{self.base_url}/{self._root}:runQuery",
                json={
                    "structuredQuery": {
                        "from": [{"collectionId": collection}],
                        "where": {
                            "fieldFilter": {
                                "field": {"fieldPath": "userId"},
                                "op": "EQUAL",
                                "value": to_value(user_id),
                            }
                        },
                    }
                },
                headers=self._headers(),
                timeout=self.timeout_s,
            )
        )
        return [
            {
                "id": row["document"]["name"].rsplit("/", 1)[1],
                **{k: from_value(v) for k, v in row["document"].get("fields", {}).items()},
            }
            for row in body
            if "document" in row
        ]

    # --- the job operations a client performs ---------------------------------------------------

    def create_job(self, job_id: str, request: JobRequest) -> None:
        self.commit([self._job_write(job_id, request)])

    def _job_write(self, job_id: str, request: JobRequest) -> dict[str, Any]:
        fields = {**request.model_dump(by_alias=True, exclude_none=True), "status": "pending"}
        return self.create_write(COLLECTION, job_id, fields, ("createdAt",))

    def create_batch(self, batch_id: str, jobs: dict[str, JobRequest]) -> None:
        """Creates a batch's jobs (each naming `batch_id`) and the batch document that starts
        them as one flow run, in one commit: all of it exists, or none."""
        items = list(jobs.items())
        if not items or len(items) > MAX_BATCH_JOBS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_JOBS} jobs, not {len(items)}")
        user_id = items[0][1].user_id
        if any(r.batch_id != batch_id or r.user_id != user_id for _, r in items):
            raise ValueError("every job of a batch names the batch and the same user")
        batch = BatchRequest(user_id=user_id, job_ids=[job_id for job_id, _ in items])
        self.commit(
            [
                *(self._job_write(job_id, request) for job_id, request in items),
                self.create_write(BATCHES, batch_id, batch.to_firestore(), ("createdAt",)),
            ]
        )

    def request(
        self,
        job_id: str,
        user_id: str,
        action: RequestAction,
        changes: dict[str, Any] | None = None,
    ) -> str:
        """Asks the trigger to cancel or retry a job (a retry with `changes`: edit and retry);
        the new request's id."""
        request_id = uuid.uuid4().hex
        fields: dict[str, Any] = {"action": action.value, "userId": user_id}
        if changes:
            fields["changes"] = changes
        self.create(f"{COLLECTION}/{job_id}/{REQUESTS}", request_id, fields, ("createdAt",))
        return request_id


# --- signing in (Identity Toolkit: the Auth emulator locally, Firebase Auth in production) -------

GOOGLE_IDENTITY_TOOLKIT = "https://identitytoolkit.googleapis.com/v1"


class SignInError(Exception):
    """Firebase Auth refused the sign-in (wrong password, disabled user, ...)."""


@dataclass(frozen=True)
class SignedInUser:
    uid: str
    id_token: str
    email: str | None = None


def identity_toolkit_url(auth_emulator_host: str | None) -> str:
    """The Auth emulator's Identity Toolkit endpoint, or Google's when no emulator is given."""
    if auth_emulator_host:
        return f"http://{auth_emulator_host}/identitytoolkit.googleapis.com/v1"
    return GOOGLE_IDENTITY_TOOLKIT


def _accounts(
    base_url: str, action: str, api_key: str, body: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    response = requests.post(
        f"{base_url}/accounts:{action}",
        params={"key": api_key},
        json={**body, "returnSecureToken": True},
        timeout=timeout_s,
    )
    if response.status_code >= 400:
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise SignInError(message)
    result: dict[str, Any] = response.json()
    return result


def sign_in_with_password(
    base_url: str,
    email: str,
    password: str,
    *,
    api_key: str = "local",
    create: bool = False,
    timeout_s: float = 15.0,
) -> SignedInUser:
    """Signs in with email and password; with `create`, signs the user up on first use.

    The Auth emulator takes any API key; production needs the Firebase project's web API key.
    """
    credentials = {"email": email, "password": password}
    try:
        body = _accounts(base_url, "signInWithPassword", api_key, credentials, timeout_s)
    except SignInError as exc:
        if not create or "EMAIL_NOT_FOUND" not in str(exc):
            raise
        body = _accounts(base_url, "signUp", api_key, credentials, timeout_s)
    return SignedInUser(uid=body["localId"], id_token=body["idToken"], email=body.get("email"))


def uid_from_id_token(id_token: str) -> str:
    """The Firebase uid an ID token names, read without verifying the token.

    Only for building the user's own paths and queries: Firestore and Storage verify the token
    themselves and refuse anything it does not allow.
    """
    try:
        payload = id_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        uid = claims.get("user_id") or claims.get("sub")
    except (IndexError, ValueError, AttributeError) as exc:
        raise SignInError("the ID token is not a JWT") from exc
    if not isinstance(uid, str) or not uid:
        raise SignInError("the ID token names no user (no user_id/sub claim)")
    return uid
