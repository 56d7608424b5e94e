"""The worker's settings: which bucket a project's uploads and results live in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.settings import Settings, default_bucket_name


@pytest.mark.parametrize(
    ("project", "bucket"),
    [
        ("acme-outreach", "acme-outreach.firebasestorage.app"),  # created since 2024-10-30
        ("demo-greetings", "demo-greetings.appspot.com"),  # the emulators' demo projects
    ],
)
def test_without_config_the_bucket_follows_the_project(project: str, bucket: str) -> None:
    assert default_bucket_name(project, {}) == bucket


def test_firebase_config_names_the_bucket_as_json_or_a_file(tmp_path: Path) -> None:
    config = {"projectId": "acme", "storageBucket": "acme.appspot.com"}  # an older project
    assert default_bucket_name("acme", {"FIREBASE_CONFIG": json.dumps(config)}) == (
        "acme.appspot.com"
    )
    path = tmp_path / "firebase-config.json"
    path.write_text(json.dumps(config))
    assert default_bucket_name("acme", {"FIREBASE_CONFIG": str(path)}) == "acme.appspot.com"
    # A config without a bucket falls back to the project's default.
    bare = json.dumps({"projectId": "acme"})
    assert default_bucket_name("acme", {"FIREBASE_CONFIG": bare}) == "acme.firebasestorage.app"


def test_greetings_bucket_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_CONFIG", json.dumps({"storageBucket": "from-config"}))
    assert Settings(project_id="acme", bucket="chosen").default_bucket == "chosen"
    assert Settings(project_id="acme").default_bucket == "from-config"
