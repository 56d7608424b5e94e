"""`greetings demo` (what `make demo` runs): the whole product on the local stack, end to end.

Starts the stack, makes a sample sales video when none is given, submits it for three prospects
(or a CSV's), shows the jobs live, writes the personalized videos to ./out/ and leaves the stack
running for a look at the Prefect UI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from greetings.client.session import connect
from greetings.commands.submit import (
    DEFAULT_GREETING_END_S,
    Submission,
    check_video,
    choose_voice,
    read_prospects,
    submit_and_follow,
)
from greetings.settings import StackSettings, get_settings
from greetings.stack.manager import Stack, StackError

DEMO_NAMES = ("Ada Lovelace", "Grace Hopper", "Alan Turing")
OUT_DIR = Path("out")
SAMPLE_SECONDS = 20
# "Hey there, friend!" is the greeting slot: espeak-ng ends it at ~1.3 s and pauses until ~1.7 s,
# so the default 1.5 s greeting end cuts in silence and the rest of the pitch is heard whole.
SAMPLE_NARRATION = (
    "Hey there, friend! Thanks for taking a minute to watch this. "
    "I recorded this short video to show you how our product saves your team hours every week, "
    "and how quickly you could get started. Let me know if you would like a closer look."
)


def sample_video(settings: StackSettings) -> Path:
    """The demo's sales video, generated once and kept in the stack's state folder."""
    from greetings.samples import make_sample_video

    path = settings.state_dir / "demo" / "sales-video.mp4"
    if not path.is_file():
        print(f"making a {SAMPLE_SECONDS} s sample sales video: {path}")
        partial = path.with_suffix(".part.mp4")
        make_sample_video(partial, seconds=SAMPLE_SECONDS, narration=SAMPLE_NARRATION)
        partial.replace(path)
    return path


def demo_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    # The user's own material is checked before anything starts.
    prospects = read_prospects(None, args.names_csv, sys.stderr) if args.names_csv else None
    voice = choose_voice(args.voice, settings)
    if args.video:
        check_video(Path(args.video), DEFAULT_GREETING_END_S, settings)

    stack = Stack(settings)
    print("starting the local stack (emulators, Storage, Prefect server and worker)…")
    try:
        stack.up()
    except StackError as exc:
        # `up` also re-applies the deployments; a busy Prefect server can refuse that while
        # every service (and the deployments from the last `up`) still works.
        if not stack.status(echo=lambda _: None):
            raise
        print(f"warning: {exc}; every service is healthy, so the demo goes on", file=sys.stderr)
    print()
    video = Path(args.video) if args.video else sample_video(settings)
    session = connect(settings, None)
    print(f"signed in as {session.user.email} (uid {session.user.uid})")
    code = submit_and_follow(
        session,
        Submission(
            video,
            prospects.names if prospects else list(DEMO_NAMES),
            voice,
            DEFAULT_GREETING_END_S,
            first_names=prospects.first_names if prospects else None,
            pronunciations=prospects.pronunciations if prospects else None,
        ),
        wait=True,
        out_dir=OUT_DIR,
        json_output=False,
    )
    print()
    print(f"personalized videos: {OUT_DIR.resolve()}/")
    print(f"the flow runs, in the Prefect UI: http://{settings.host}:{settings.prefect_port}/runs")
    print(
        "the stack keeps running; stop it with `uv run greetings stack down` (or `make stack-down`)"
    )
    return code
