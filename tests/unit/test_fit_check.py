"""The fit check's answer (flows/fit_check.py) and how `greetings submit` shows it (pure)."""

from __future__ import annotations

import threading

import fit_checks  # from triggers/, as the Functions runtime imports it
import pytest

from flows.fit_check import (
    FitCheckRequest,
    NameFit,
    Prospect,
    check_names,
    count_verdicts,
    suggest_greeting_end,
)
from flows.job import ErrorCode, JobError
from flows.stages.render import FitMeasure
from flows.stages.validate import ValidRequest
from greetings.commands import fit


def measure_of(seconds: dict[str, float], slot_s: float = 1.0, max_tempo: float = 1.3):  # type: ignore[no-untyped-def]
    """A stand-in for speech and measure: each spoken text lasts `seconds[text]`."""
    lock = threading.Lock()
    asked: list[str] = []

    def measure(job: ValidRequest) -> FitMeasure:
        with lock:
            asked.append(job.greeting_text)
        spoken = seconds[job.greeting_text]
        tempo = max(1.0, spoken / slot_s)
        return FitMeasure(
            fits=tempo <= max_tempo,
            tempo=tempo,
            provider_speed=1.0,
            pause_used_s=0.0,
            lead_trimmed_s=0.0,
            greeting_s=spoken,
            needs_slot_s=round(spoken / max_tempo, 3),
        )

    measure.asked = asked  # type: ignore[attr-defined]
    return measure


def request(*names: str, **fields: object) -> FitCheckRequest:
    return FitCheckRequest(
        user_id="u1",
        input_video="user-uploads/u1/video.mp4",
        voice_id="piper:joe",
        greeting_end_second=1.0,
        prospects=[Prospect(prospect_name=n) for n in names],
        **fields,  # type: ignore[arg-type]
    )


def test_every_name_answered_in_the_order_given_and_invalid_ones_say_why() -> None:
    measure = measure_of({"Hey Al,": 0.6, "Hey Maximilian,": 1.2, "Hey Bartholomew,": 2.0})
    names = ("Maximilian Oyelaran", "Al Li", "   ", "Bartholomew Fe", "x" * 101)
    results, valid = check_names(request(*names), measure, threads=3)
    assert [r.prospect_name for r in results] == ["Maximilian Oyelaran", "Al Li", "   ",
                                                  "Bartholomew Fe", "x" * 101]  # fmt: skip
    assert [r.verdict for r in results] == ["fitted", "fits", "invalid", "too-long", "invalid"]
    assert results[2].error is not None and results[2].error.code == ErrorCode.INVALID_NAME
    assert results[3].needs_greeting_end_second == pytest.approx(2.0 / 1.3, abs=1e-3)
    assert results[1].text == "Hey Al,"  # what is spoken: the first name in the template
    assert len(valid) == 3 and sorted(measure.asked) == sorted(  # type: ignore[attr-defined]
        ["Hey Al,", "Hey Maximilian,", "Hey Bartholomew,"]
    )
    assert count_verdicts(results) == {"fits": 1, "fitted": 1, "too-long": 1, "invalid": 2}


def test_one_names_failed_speech_is_its_own_answer() -> None:
    def measure(job: ValidRequest) -> FitMeasure:
        raise JobError(ErrorCode.TTS_REJECTED, "The voice refused this text.")

    results, _ = check_names(request("Ada Lovelace"), measure)
    assert results[0].verdict == "invalid" and results[0].error is not None
    assert results[0].error.code == ErrorCode.TTS_REJECTED


def too_long(needs: float) -> NameFit:
    return NameFit(prospect_name="x", verdict="too-long", needs_greeting_end_second=needs)


def test_the_suggestion_is_the_first_pause_long_enough_for_every_name() -> None:
    ends = [0.4, 1.06, 3.13, 6.0]
    fits = NameFit(prospect_name="y", verdict="fits")
    assert suggest_greeting_end([too_long(1.0), too_long(1.5), fits], 0.55, ends) == 3.13
    assert suggest_greeting_end([too_long(0.9)], 0.55, ends) == 1.06
    # Never earlier than the end checked, none when all fit, none when no pause is late enough.
    assert suggest_greeting_end([too_long(0.3)], 0.55, ends) == 1.06
    assert suggest_greeting_end([fits], 0.55, ends) is None
    assert suggest_greeting_end([too_long(7.0)], 0.55, ends) is None
    assert suggest_greeting_end([too_long(10.5)], 0.55, [*ends, 11.0]) is None  # over the 10 s cap


def test_a_check_costs_one_token_per_ten_names() -> None:
    assert fit_checks.tokens_for({"prospects": ["a"] * 1}) == 1
    assert fit_checks.tokens_for({"prospects": ["a"] * 40}) == 4
    assert fit_checks.tokens_for({"prospects": ["a"] * 400}) == 40
    assert fit_checks.tokens_for({}) == 1


CHECK = {
    "greetingEndSecond": 0.55,
    "results": [
        {"prospectName": "Al Li", "verdict": "fits"},
        {"prospectName": "Ana Kovač", "verdict": "fitted", "providerSpeed": 1.2,
         "pauseUsedSecond": 0.31, "tempo": 1.05},
        {"prospectName": "Dr. Maximilian Oyelaran-Whitfield", "verdict": "too-long",
         "needsGreetingEndSecond": 1.48},
        {"prospectName": "x", "verdict": "invalid",
         "error": {"code": "invalid-name", "message": "The prospect name is empty."}},
    ],
    "counts": {"fits": 1, "fitted": 1, "too-long": 1, "invalid": 1},
    "suggestedGreetingEndSecond": 3.13,
}  # fmt: skip


def test_the_table_says_each_name_and_the_fix() -> None:
    lines = fit.fit_lines(CHECK)
    assert lines[0] == "fit check (greeting ends at 0.55 s):"
    assert lines[1].split() == ["Al", "Li", "fits"]
    assert "spoken 1.20x faster, uses 0.31 s of the pause, played 1.05x" in lines[2]
    assert "TOO LONG: needs the greeting to end at 1.48 s or later" in lines[3]
    assert "CANNOT BE MADE: The prospect name is empty." in lines[4]
    assert lines[5] == "2 of 4 fit"
    assert lines[6].endswith("--greeting-end 3.13")


def test_names_that_fail_are_sent_only_when_the_user_says_so() -> None:
    assert not fit.go_on(CHECK, yes=False, ask=None)  # no terminal: nothing is created
    assert fit.go_on(CHECK, yes=True, ask=None)
    assert fit.go_on(CHECK, yes=False, ask=lambda question: "y")
    assert not fit.go_on(CHECK, yes=False, ask=lambda question: "")
    every = {**CHECK, "counts": {"fits": 4}}
    assert fit.go_on(every, yes=False, ask=None)


def test_the_document_holds_only_what_the_rules_allow() -> None:
    fields = fit.check_fields(
        "u1",
        "user-uploads/u1/v.mp4",
        "piper:joe",
        [{"prospectName": "Ada", "firstName": None, "pronunciation": "AY-da"}],
        greeting_end_s=None,
        greeting_text="Hi {firstName},",
        following_text=None,
    )
    assert fields == {
        "userId": "u1",
        "inputVideo": "user-uploads/u1/v.mp4",
        "voiceId": "piper:joe",
        "prospects": [{"prospectName": "Ada", "pronunciation": "AY-da"}],
        "status": "pending",
        "greetingText": "Hi {firstName},",
    }
    FitCheckRequest.model_validate(fields)  # and the worker reads it back
