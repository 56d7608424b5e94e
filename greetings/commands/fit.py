"""The fit check `greetings submit` runs before it creates any job (flows/fit_check.py answers).

It writes a `fitChecks` document as the signed-in user (through the rules, as the page does),
waits for the worker's answer, prints one line per name (fits, fitted and how, or too long and
what it needs) and the greeting end at which every name fits, and asks before sending names that
would fail. The speech the check made is in the speech cache: the jobs reuse it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from flows.fit_check import FIT_CHECKS
from greetings.client.session import Session
from greetings.errors import CliError

# A check of 400 names on a busy worker takes a minute or two; a stuck one should not hang a
# script forever.
WAIT_S = 600.0
POLL_S = 0.5
NAME_WIDTH = 32


class FitCheckFailed(CliError):
    pass


def check_fields(
    user_id: str,
    input_video: str,
    voice_id: str,
    prospects: Sequence[Mapping[str, str | None]],
    *,
    greeting_end_s: float | None,
    greeting_text: str | None,
    following_text: str | None,
) -> dict[str, Any]:
    """The fitChecks document the rules let this user create (pure)."""
    fields: dict[str, Any] = {
        "userId": user_id,
        "inputVideo": input_video,
        "voiceId": voice_id,
        "prospects": [{k: v for k, v in p.items() if v is not None} for p in prospects],
        "status": "pending",
    }
    optional = {
        "greetingEndSecond": greeting_end_s,
        "greetingText": greeting_text,
        "followingText": following_text,
    }
    return fields | {k: v for k, v in optional.items() if v is not None}


def run_fit_check(
    session: Session,
    fields: dict[str, Any],
    *,
    wait_s: float = WAIT_S,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Creates the check and returns its answered document (`status` done); raises if it failed
    or took longer than `wait_s`."""
    check_id = uuid.uuid4().hex
    session.firestore.create(FIT_CHECKS, check_id, fields, ("createdAt",))
    deadline = clock() + wait_s
    while True:
        doc = session.firestore.get(FIT_CHECKS, check_id)
        if doc.get("status") == "done":
            return doc
        if doc.get("status") == "failed":
            error = doc.get("error") or {}
            raise FitCheckFailed(
                f"the fit check failed ({error.get('code', '?')}): {error.get('message', '')}"
            )
        if clock() > deadline:
            raise FitCheckFailed(f"the fit check had no answer after {wait_s:.0f} s")
        time.sleep(POLL_S)


def _how(result: Mapping[str, Any]) -> str:
    """What fitting it took, in words (pure)."""
    steps = []
    if (result.get("providerSpeed") or 1.0) > 1.0:
        steps.append(f"spoken {result['providerSpeed']:.2f}x faster")
    if (result.get("pauseUsedSecond") or 0.0) > 0:
        steps.append(f"uses {result['pauseUsedSecond']:.2f} s of the pause")
    if (result.get("tempo") or 1.0) > 1.0:
        steps.append(f"played {result['tempo']:.2f}x")
    return ", ".join(steps)


def fit_lines(check: Mapping[str, Any]) -> list[str]:
    """The table `greetings submit` prints: one line per name, then the totals (pure)."""
    end = check.get("greetingEndSecond")
    lines = [f"fit check (greeting ends at {end:.2f} s):" if end else "fit check:"]
    for result in check.get("results", []):
        name = str(result.get("prospectName", ""))[:NAME_WIDTH].ljust(NAME_WIDTH)
        verdict = result.get("verdict")
        if verdict == "fits":
            said = "fits"
        elif verdict == "fitted":
            said = f"fits: {_how(result)}"
        elif verdict == "too-long":
            needs = result.get("needsGreetingEndSecond")
            said = f"TOO LONG: needs the greeting to end at {needs:.2f} s or later"
        else:
            said = f"CANNOT BE MADE: {(result.get('error') or {}).get('message', '')}"
        lines.append(f"  {name}  {said}")
    counts = check.get("counts", {})
    fit = counts.get("fits", 0) + counts.get("fitted", 0)
    total = len(check.get("results", []))
    lines.append(f"{fit} of {total} fit")
    suggestion = check.get("suggestedGreetingEndSecond")
    if suggestion is not None:
        lines.append(
            f"all fit if the greeting ends at {suggestion:.2f} s (the next pause of the "
            f"recording; the words up to it are replaced): --greeting-end {suggestion:.2f}"
        )
    elif counts.get("too-long"):
        lines.append(
            "no later pause in the first 10 s leaves room for them: use a shorter greeting text"
        )
    return lines


def all_fit(check: Mapping[str, Any]) -> bool:
    counts = check.get("counts", {})
    return not counts.get("too-long") and not counts.get("invalid")


def go_on(check: Mapping[str, Any], *, yes: bool, ask: Callable[[str], str] | None) -> bool:
    """Whether to create the jobs: all fit, `--yes`, or the user says so (`ask` is None when
    nobody can be asked: then not)."""
    if all_fit(check) or yes:
        return True
    if ask is None:
        return False
    counts = check.get("counts", {})
    failing = counts.get("too-long", 0) + counts.get("invalid", 0)
    answer = ask(f"{failing} of them would fail. Create the videos anyway? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def print_lines(lines: Sequence[str], out: TextIO) -> None:
    out.write("\n".join(lines) + "\n")
    out.flush()
