"""Validation of the client-written fields: each bad value has its own code and a usable message."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flows.job import ErrorCode, GreetingJob, JobError, JobRequest
from flows.stages.render import check_output_duration
from flows.stages.validate import (
    check_media,
    check_size,
    clean_name,
    following_text,
    greeting_end,
    greeting_text,
    input_path,
    validate_request,
)
from greetings.bench.names import REAL_NAMES
from tests.support.mediacheck import media_info as media


def job(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "userId": "u1",
        "inputVideo": "user-uploads/u1/video.mp4",
        "prospectName": "  Jane   Doe ",
        "voiceId": "espeak:en-us",
        "greetingEndSecond": 1.5,
    }
    fields.update(overrides)
    return fields


def code_of(fn: Any, *args: Any) -> ErrorCode:
    with pytest.raises(JobError) as error:
        fn(*args)
    assert error.value.message  # every refusal tells the user something
    assert error.value.retryable is False
    return error.value.code


def test_valid_request_is_normalised() -> None:
    request = validate_request(job())
    assert request.prospect_name == "Jane Doe"
    assert request.greeting_text == "Hey Jane,"  # by first name, as people greet people
    assert request.greeting_end_s == 1.5


@pytest.mark.parametrize(
    "voice",
    ["JBFqnCBsd6RMkjVDRZzb", "espeak:en-us", "espeak:en-us+f3", "piper:joe", "clone"],
)
def test_voice_ids_of_every_kind_pass(voice: str) -> None:
    assert validate_request(job(voiceId=voice)).voice_id == voice


@pytest.mark.parametrize(
    "voice",
    [
        "../../v1/sound-generation",  # reached another ElevenLabs endpoint with our key
        "../../v1/voices/add#",
        "JBFqnCBsd6RMkjVDRZz",  # 19
        "JBFqnCBsd6RMkjVDRZzb1",  # 21
        "espeak:../../etc/passwd",
        "espeak:",
        "voice id",
        "",
        None,
        7,
    ],
)
def test_voice_ids_of_no_kind_fail_before_any_provider(voice: Any) -> None:
    assert code_of(validate_request, job(voiceId=voice)) == ErrorCode.INVALID_VOICE


@pytest.mark.parametrize(
    "name",
    ["a%2Fb.mp4", "sub/dir.mp4", ".hidden.mp4", "x?.mp4", "x#y.mp4", "back\\slash.mp4"],
)
def test_upload_names_with_separators_are_refused_up_front(name: str) -> None:
    refused = job(inputVideo=f"user-uploads/u1/{name}")
    assert code_of(validate_request, refused) == ErrorCode.INPUT_PATH_FORBIDDEN


def test_the_spoken_text_has_its_own_cap_after_the_template_is_filled() -> None:
    long_name = "Bartholomew Montgomery-Fitzwilliam Featherstonehaugh" + " Jr" * 15
    many = job(prospectName=long_name[:100], greetingText="{name} " * 3)
    assert code_of(validate_request, many) == ErrorCode.INVALID_GREETING_TEXT
    assert validate_request(job(greetingText="{name} " * 2)).greeting_text == "Jane Doe Jane Doe"


def test_an_explicit_first_name_and_fallback_win() -> None:
    assert validate_request(job(firstName="Janie")).greeting_text == "Hey Janie,"
    blank = job(firstName=" ", greetingFallback="friend")
    assert validate_request(blank).greeting_text == "Hey friend,"
    template = job(greetingText="Hello {firstName} {lastName}, dear {name}!")
    assert validate_request(template).greeting_text == "Hello Jane Doe, dear Jane Doe!"
    assert code_of(validate_request, job(firstName="$(id)")) == ErrorCode.INVALID_NAME
    assert code_of(validate_request, job(firstName=7)) == ErrorCode.INVALID_NAME
    assert code_of(validate_request, job(greetingFallback="x" * 41)) == (
        ErrorCode.INVALID_GREETING_TEXT
    )


def test_the_pronunciation_is_what_the_voice_says_for_the_name() -> None:
    siobhan = job(prospectName="Siobhan Kelly", pronunciation="  Sheh-VAWN ")
    request = validate_request(siobhan)
    assert request.greeting_text == "Hey Sheh-VAWN,"
    assert request.pronunciation == "Sheh-VAWN"
    # The job's name (shown everywhere, and the result's file name) stays as written.
    assert request.prospect_name == "Siobhan Kelly"
    # {firstName} and {name} are what the greeting calls the person; {lastName} stays written.
    template = job(
        prospectName="Siobhan Kelly",
        pronunciation="Sheh-VAWN",
        greetingText=("Hello {firstName} {lastName}, dear {name}!"),
    )
    assert validate_request(template).greeting_text == "Hello Sheh-VAWN Kelly, dear Sheh-VAWN!"
    # It wins over firstName and the fallback word: it says how to say the name greeted.
    explicit = job(firstName="Shiv", pronunciation="Shiv-AWN")
    assert validate_request(explicit).greeting_text == "Hey Shiv-AWN,"
    assert validate_request(job(prospectName="Dr.", pronunciation="Doc")).greeting_text == (
        "Hey Doc,"
    )
    # Unset or blank: the name is said as written.
    assert validate_request(job(pronunciation=" ")).greeting_text == "Hey Jane,"
    assert validate_request(job(pronunciation=None)).pronunciation is None


def test_the_spoken_cap_counts_the_pronunciation() -> None:
    # A 100-character pronunciation said twice is 200 characters of speech, over the 120 spoken.
    long = job(pronunciation="Ab-" * 33 + "a", greetingText="{name} and {firstName}")
    assert code_of(validate_request, long) == ErrorCode.INVALID_GREETING_TEXT
    # A short name with a long pronunciation: the cap is on what is said, not on what is written.
    once = job(prospectName="Jo", pronunciation="Ab-" * 33 + "a", greetingText="Hi {name}")
    assert len(validate_request(once).greeting_text) == 103
    # The pronunciation itself is at most a name's length.
    assert code_of(validate_request, job(pronunciation="x" * 101)) == ErrorCode.INVALID_NAME


@pytest.mark.parametrize(
    "pronunciation",
    ["x" * 101, 7, "Sheh\nVAWN", '<phoneme ph="x">S</phoneme>', "$(id)", "{name}", "Sam 🎉"],
)
def test_a_pronunciation_that_cannot_be_spoken_is_invalid_name(pronunciation: Any) -> None:
    with pytest.raises(JobError) as refused:
        validate_request(job(pronunciation=pronunciation))
    assert refused.value.code == ErrorCode.INVALID_NAME
    assert "pronunciation" in refused.value.message


def test_the_following_words_are_carried_for_the_voice_and_never_spoken() -> None:
    request = validate_request(job(followingText="  I saw your team\u00a0is hiring!  "))
    assert request.following_text == "I saw your team is hiring!"
    assert request.greeting_text == "Hey Jane,"  # not part of what is said
    assert validate_request(job()).following_text is None
    assert following_text(" ") is None
    assert following_text("Quick question?") == "Quick question?"
    assert following_text("x" * 200) == "x" * 200


@pytest.mark.parametrize(
    "words",
    ["x" * 201, 7, "line\nbreak", "<break time='3s'/>", "$(id)", "Hi {name}", "Ok 🎉", "a\u202eb"],
)
def test_following_words_that_cannot_be_spoken_are_refused(words: Any) -> None:
    with pytest.raises(JobError) as refused:
        validate_request(job(followingText=words))
    assert refused.value.code == ErrorCode.INVALID_GREETING_TEXT
    assert "followingText" in refused.value.message


def test_the_new_fields_travel_through_the_job_document() -> None:
    request = JobRequest(
        user_id="u1",
        input_video="user-uploads/u1/v.mp4",
        prospect_name="Siobhan Kelly",
        voice_id="espeak:en-us",
        pronunciation="Sheh-VAWN",
        following_text="I saw your team is hiring",
    )
    written = request.to_firestore()
    assert written["pronunciation"] == "Sheh-VAWN"
    assert written["followingText"] == "I saw your team is hiring"
    read = GreetingJob.from_firestore("job-1", {**written, "status": "pending"})
    assert (read.pronunciation, read.following_text) == ("Sheh-VAWN", "I saw your team is hiring")
    assert read.prospect_name == "Siobhan Kelly"
    # Unset, they are not written at all (the rules allow them only as text).
    bare = JobRequest.model_validate(
        {k: v for k, v in written.items() if k not in ("pronunciation", "followingText")}
    ).to_firestore()
    assert "pronunciation" not in bare and "followingText" not in bare


# Full names as they stand in a sales team's CSV (titles, hyphens, diacritics, particles, three
# parts, "Last, First", initials, one-word names), as the names benchmark renders them.
@pytest.mark.parametrize(("name", "first"), REAL_NAMES.items())
def test_real_names_are_greeted_by_what_people_call_them(name: str, first: str) -> None:
    assert clean_name(name) == name
    assert validate_request(job(prospectName=name)).greeting_text == f"Hey {first},"


@pytest.mark.parametrize(
    ("name", "first"),
    [
        ("J. R. R. Tolkien", "J. R. R."),
        ("J.R.R. Tolkien", "J.R.R."),
        ("J. Edgar Hoover", "J. Edgar Hoover"),
    ],
)
def test_initials_are_what_such_people_are_called(name: str, first: str) -> None:
    assert validate_request(job(prospectName=name)).greeting_text == f"Hey {first},"


def test_a_name_with_nothing_to_call_gets_the_fallback_word() -> None:
    assert validate_request(job(prospectName="Dr.")).greeting_text == "Hey there,"
    fallback = job(prospectName="Dr.", greetingFallback="friend")
    assert validate_request(fallback).greeting_text == "Hey friend,"


@pytest.mark.parametrize(
    "name",
    ["José", "O'Brien", "Anne-Marie", "李小龙", "محمد", "Dr. Smith, Jr.", "AT&T (Ops)", "x" * 100],
)
def test_real_names_pass(name: str) -> None:
    assert clean_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "x" * 101,
        None,
        42,
        "Bob\nSmith",
        "Tab\tbed",
        "Eve\u202etxt.exe",  # right-to-left override
        'Bob "The Builder"',
        "Bob; rm -rf /",
        "$(reboot)",
        "`id`",
        "a:b,c[d]",
        '<break time="5s"/>',
        "Sam 🎉",
        "{name}",
    ],
)
def test_hostile_or_broken_names_fail_with_invalid_name(name: Any) -> None:
    assert code_of(clean_name, name) == ErrorCode.INVALID_NAME


def test_template_is_taken_literally() -> None:
    assert greeting_text("Hi {name}!", "Ann") == "Hi Ann!"
    assert greeting_text(None, "Ann Lee") == "Hey Ann,"
    assert greeting_text("{lastName}, {firstName} ({name})", "Ann Lee") == "Lee, Ann (Ann Lee)"
    assert greeting_text("Hi {firstName}!", "{name} Lee") == "Hi {name}!"  # never a placeholder
    assert (
        code_of(greeting_text, "Hi {name} {0.__class__}", "Ann") == ErrorCode.INVALID_GREETING_TEXT
    )
    assert code_of(greeting_text, "", "Ann") == ErrorCode.INVALID_GREETING_TEXT


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 11, 10.01, "1.5", True, None])
def test_greeting_end_out_of_range(value: Any) -> None:
    assert code_of(greeting_end, value) == ErrorCode.INVALID_GREETING_END


@pytest.mark.parametrize("value", [0.1, 1, 10])
def test_greeting_end_in_range(value: Any) -> None:
    assert greeting_end(value) == float(value)


@pytest.mark.parametrize(
    "path",
    [
        "user-uploads/u2/video.mp4",
        "user-uploads/u1/../u2/video.mp4",
        "/user-uploads/u1/video.mp4",
        "user-uploads/u1/",
        "greeting-results/u1/x.mp4",
        "user-uploads/u10/video.mp4",
    ],
)
def test_input_outside_the_owners_folder_is_forbidden(path: str) -> None:
    assert code_of(input_path, path, "u1") == ErrorCode.INPUT_PATH_FORBIDDEN


def test_size_limits() -> None:
    assert code_of(check_size, 0, 100) == ErrorCode.INPUT_NOT_VIDEO
    assert code_of(check_size, 101, 100) == ErrorCode.INPUT_TOO_LARGE
    check_size(100, 100)


def test_media_checks() -> None:
    check_media(media(), 1.5, 600)
    assert code_of(check_media, media(video=False), 1.5, 600) == ErrorCode.INPUT_NO_VIDEO_STREAM
    assert code_of(check_media, media(audio=False), 1.5, 600) == ErrorCode.INPUT_NO_AUDIO_STREAM
    assert code_of(check_media, media(duration=2.0), 1.5, 600) == ErrorCode.INPUT_TOO_SHORT
    assert code_of(check_media, media(duration=601), 1.5, 600) == ErrorCode.INPUT_TOO_LONG


def test_a_render_shorter_than_its_input_means_a_truncated_upload() -> None:
    check_output_duration(20.02, 20.0)
    assert code_of(check_output_duration, 4.0, 8.0) == ErrorCode.INPUT_NOT_VIDEO
