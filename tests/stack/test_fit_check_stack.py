"""The fit check before sending, as a rep meets it: `greetings submit` with the greeting's end
placed right where "Hey John" ends, on a phone recording (44.1 kHz, room tone), with the full
names of a real list (titles, hyphens, diacritics, three parts).

It must say before any job exists which names do not fit, and the end at which all do; that
end, sent, must make every video; and the jobs must reuse the check's speech (the ElevenLabs
stand-in is asked for nothing new).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from flows.fit_check import FIT_CHECKS
from greetings.cli import main
from greetings.samples import make_recording
from tests.support.fake_elevenlabs import FakeElevenLabs

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

RECORDING = (
    "Hey John. Thanks for watching this video. I made it for you today, so here is why it "
    "matters to your team."
)
# Where the rep typed it in a number box: before "John" is over, its pause not included.
HEY_JOHN_ENDS_S = 0.55
NAMES = [
    "Dr. Maximilian Oyelaran-Whitfield",
    "Al Li",
    "María José García Núñez",
    "Mr. Bartholomew Featherstonehaugh III",
    "Ana Kovač",
    "Siobhan Kelly",
]


def test_the_check_names_what_does_not_fit_and_its_fix_makes_every_video(
    stack: Any, clients: Any, fake: FakeElevenLabs, tmp_path: Path, capsys: Any
) -> None:
    email = f"fit-{uuid.uuid4().hex[:12]}@greetings.test"
    voice = f"fitvoice{uuid.uuid4().hex[:12]}"  # an ElevenLabs id's shape: 20 alphanumerics
    fake.add_voice(voice)
    video = make_recording(tmp_path / "phone.mp4", RECORDING)
    names = tmp_path / "prospects.csv"
    names.write_text("name,company\n" + "".join(f'"{n}",Acme\n' for n in NAMES))
    template = "Hey {name},"  # the full name: long ones cannot fit a slot that short
    base = ["submit", str(video), "--names-csv", str(names), "--voice", voice, "--user", email]

    code = main([*base, "--greeting-text", template, "--greeting-end", str(HEY_JOHN_ENDS_S)])
    said = capsys.readouterr().out
    # Not a terminal, no --yes: nothing is created, and the table said why.
    assert code == 1
    assert "no videos were created" in said
    lines = {n: next(line for line in said.splitlines() if n[:32] in line) for n in NAMES}
    assert "TOO LONG" in lines["Dr. Maximilian Oyelaran-Whitfield"]
    assert "TOO LONG" in lines["Mr. Bartholomew Featherstonehaugh III"]
    assert "TOO LONG" not in lines["Al Li"]
    suggestion = float(said.split("--greeting-end ")[1].split()[0])
    assert HEY_JOHN_ENDS_S < suggestion <= 10
    checks = list(clients.db.collection(FIT_CHECKS).where("voiceId", "==", voice).stream())
    assert len(checks) == 1
    check = checks[0].to_dict()
    assert [r["prospectName"] for r in check["results"]] == NAMES  # the list's order
    assert check["greetingEndSecond"] == HEY_JOHN_ENDS_S
    jobs = list(clients.db.collection("greetingJobs").where("voiceId", "==", voice).stream())
    assert jobs == []
    asked = {text: fake.calls_for(text) for text in {r["text"] for r in check["results"]}}
    assert all(n >= 1 for n in asked.values())

    # The one fix, as offered: every name fits, every video is made, no name spoken again.
    out = tmp_path / "out"
    code = main(
        [*base, "--greeting-text", template, "--greeting-end", f"{suggestion:.2f}", "--wait",
         "--out", str(out), "--json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "TOO LONG" not in captured.err and f"{len(NAMES)} of {len(NAMES)} fit" in captured.err
    finished = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert sorted(r["status"] for r in finished) == ["completed"] * len(NAMES)
    assert len(list(out.glob("*.mp4"))) == len(NAMES)
    assert {text: fake.calls_for(text) for text in asked} == asked
