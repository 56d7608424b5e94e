"""What a too-long greeting's error tells the user to change (pure)."""

from __future__ import annotations

import re

import pytest

from flows.job import ErrorCode, JobError
from flows.stages import validate
from flows.stages.render.timing import MAX_GREETING_END_S, fit_greeting, too_long_message


def advised_end(message: str) -> float | None:
    found = re.search(r"Set greetingEndSecond to ([0-9.]+) s", message)
    return float(found.group(1)) if found else None


def test_the_limit_is_the_rules_limit() -> None:
    assert MAX_GREETING_END_S == validate.MAX_GREETING_END_S == 10.0


def test_a_greeting_that_fits_a_later_slot_is_told_which() -> None:
    message = too_long_message(2.0, 1.0, 1.3)
    assert advised_end(message) == 1.54
    assert "shorter greeting text" in message
    # Right at the limit: 13 s at 1.3x needs exactly 10 s, which the rules allow.
    assert advised_end(too_long_message(13.0, 4.0, 1.3)) == 10.0


@pytest.mark.parametrize(
    ("greeting_s", "end_s", "max_tempo"),
    [(13.02, 4.0, 1.3), (14.0, 9.5, 1.3), (30.0, 10.0, 1.3), (10.5, 2.0, 1.0), (20.0, 8.0, 1.5)],
)
def test_no_slot_the_rules_forbid_is_ever_advised(
    greeting_s: float, end_s: float, max_tempo: float
) -> None:
    message = too_long_message(greeting_s, end_s, max_tempo)
    assert advised_end(message) is None
    assert "greetingEndSecond is at most 10 s" in message
    assert 'shorter greeting text, such as "Hey {firstName},"' in message
    assert f"{greeting_s:.2f} s" in message and f"{end_s:.2f} s" in message


def test_every_advised_end_is_allowed_and_fits() -> None:
    for tenths in range(1, 400):
        greeting_s = tenths / 10
        for end_s in (0.5, 1.0, 2.5, 6.0, 9.9):
            for max_tempo in (1.0, 1.15, 1.3, 1.5):
                if greeting_s / end_s <= max_tempo:
                    continue
                advised = advised_end(too_long_message(greeting_s, end_s, max_tempo))
                if advised is None:
                    assert greeting_s / max_tempo > MAX_GREETING_END_S - 0.01
                else:
                    assert 0 < advised <= MAX_GREETING_END_S
                    # fit_greeting raises for a slot the greeting does not fit
                    assert fit_greeting(greeting_s, advised, max_tempo) >= 1.0


def test_the_job_error_carries_the_message() -> None:
    with pytest.raises(JobError) as caught:
        fit_greeting(14.0, 3.0, 1.3)
    assert caught.value.code == ErrorCode.GREETING_TOO_LONG
    assert advised_end(caught.value.message) is None
    assert "Hey {firstName}," in caught.value.message
