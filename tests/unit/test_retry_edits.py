"""Edit and retry: what a retry request may change, checked as firestore.rules check it."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from flows.lifecycle import RETRY_EDITS, EditRefused, describe_edits, edit_fields
from greetings.commands.jobs import retry_changes
from greetings.errors import CliError


@pytest.mark.parametrize(
    ("changes", "checked"),
    [
        ({"greetingEndSecond": 2}, {"greetingEndSecond": 2.0}),
        ({"greetingEndSecond": 10}, {"greetingEndSecond": 10.0}),
        ({"greetingEndSecond": None}, {"greetingEndSecond": None}),
        ({"firstName": ""}, {"firstName": ""}),
        (
            {"greetingText": "Hi {firstName},", "pronunciation": None},
            {"greetingText": "Hi {firstName},", "pronunciation": None},
        ),
    ],
)
def test_edits_that_a_job_could_be_created_with_pass(
    changes: dict[str, Any], checked: dict[str, Any]
) -> None:
    assert edit_fields(changes) == checked


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({}, "at least one field"),
        ([], "at least one field"),
        ({"voiceId": "piper:joe"}, "cannot change voiceId"),
        ({"inputVideo": "user-uploads/x/y.mp4", "status": "completed"}, "inputVideo, status"),
        ({"greetingEndSecond": 0}, "above 0"),
        ({"greetingEndSecond": 10.01}, "at most 10"),
        ({"greetingEndSecond": True}, "greetingEndSecond"),
        ({"greetingEndSecond": "2"}, "greetingEndSecond"),
        ({"greetingText": ""}, "1 to 200"),
        ({"greetingText": "x" * 201}, "1 to 200"),
        ({"firstName": None}, "firstName"),
        ({"firstName": "x" * 101}, "at most 100"),
        ({"pronunciation": ""}, "1 to 100"),
    ],
)
def test_edits_no_job_could_be_created_with_are_refused_in_words(changes: Any, words: str) -> None:
    with pytest.raises(EditRefused, match=words):
        edit_fields(changes)


def test_every_editable_field_is_described() -> None:
    said = describe_edits(
        {
            "greetingEndSecond": 1.25,
            "greetingText": "Hi {firstName},",
            "firstName": "Max",
            "pronunciation": "Maks",
        }
    )
    assert said == (
        "the greeting ending at 1.25 s, the text 'Hi {firstName},', the first name 'Max', "
        "said 'Maks'"
    )
    defaults = describe_edits({field: None for field in RETRY_EDITS if field != "firstName"})
    assert defaults == (
        "the greeting end found from the recording, the default greeting text, no pronunciation"
    )
    assert describe_edits({"firstName": ""}) == "no first name"


def _args(**given: Any) -> argparse.Namespace:
    fields = {
        "greeting_end": None,
        "greeting_text": None,
        "first_name": None,
        "pronunciation": None,
    }
    return argparse.Namespace(**{**fields, **given})


def test_the_cli_sends_only_what_was_given() -> None:
    assert retry_changes(_args()) == {}
    assert retry_changes(_args(greeting_end=2.5, first_name="Max")) == {
        "greetingEndSecond": 2.5,
        "firstName": "Max",
    }
    with pytest.raises(CliError, match="cannot retry with these changes: greetingEndSecond"):
        retry_changes(_args(greeting_end=12.0))


def test_the_edits_are_described_in_the_same_order_whatever_order_the_map_arrived_in() -> None:
    # Firestore does not keep a map's key order: the answer must not depend on it.
    forward = {"greetingEndSecond": 1.5, "firstName": "Max"}
    backward = {"firstName": "Max", "greetingEndSecond": 1.5}
    said = {describe_edits(edit_fields(changes)) for changes in (forward, backward)}
    assert said == {"the greeting ending at 1.5 s, the first name 'Max'"}
