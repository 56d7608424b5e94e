"""What an end user's client does, as the user: Firestore's REST API with the user's ID token.

Requests carry the user's token, so firestore.rules decide exactly as they do for a browser.
(The Python Firestore client in emulator mode always acts as admin; it cannot test the rules.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from flows.job import COLLECTION, JobRequest, JobStatus


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
        """Creates a document (never overwrites), with `server_time` fields set to the request time."""
        self.commit(
            [
                {
                    "update": {
                        "name": f"{self._root}/{collection}/{doc_id}",
                        "fields": {k: to_value(v) for k, v in fields.items()},
                    },
                    "currentDocument": {"exists": False},
                    "updateTransforms": [
                        {"fieldPath": f, "setToServerValue": "REQUEST_TIME"} for f in server_time
                    ],
                }
            ]
        )

    def update(self, collection: str, doc_id: str, fields: dict[str, Any]) -> None:
        self.commit(
            [
                {
                    "update": {
                        "name": f"{self._root}/{collection}/{doc_id}",
                        "fields": {k: to_value(v) for k, v in fields.items()},
                    },
                    "updateMask": {"fieldPaths": list(fields)},
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
        fields = request.model_dump(by_alias=True, exclude_none=True)
        self.create(COLLECTION, job_id, {**fields, "status": "pending"}, ("createdAt",))

    def request_cancel(self, job_id: str) -> None:
        self.update(COLLECTION, job_id, {"status": JobStatus.CANCEL_REQUESTED.value})

    def request_retry(self, job_id: str) -> None:
        self.update(COLLECTION, job_id, {"status": JobStatus.RETRY_REQUESTED.value})
