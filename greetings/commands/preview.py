"""`greetings preview VIDEO --name NAME`: one greeting rendered and saved, to hear it before
sending a batch of a hundred.

A preview is an ordinary job marked `preview: true`, rendered by the same worker the same way;
its greeting goes into the speech cache, so the batch that follows with the same voice, text
and name speaks that one from the cache instead of asking the voice again.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from greetings.client.session import connect
from greetings.commands.submit import build_submission, submit_and_follow
from greetings.errors import UsageError
from greetings.settings import get_settings


def preview_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    args.names_csv = None  # build_submission reads --name or a CSV: a preview is one name
    submission = build_submission(args, settings, sys.stderr)
    if len(submission.names) != 1:
        raise UsageError("a preview is one name: give --name once")
    pronunciations = [args.pronunciation] if args.pronunciation else None
    submission = replace(submission, pronunciations=pronunciations, preview=True)
    session = connect(settings, args.user)
    out_dir = Path(args.out)
    code = submit_and_follow(session, submission, wait=True, out_dir=out_dir, json_output=False)
    if code == 0:
        print(
            f"the preview is in {out_dir}/: play it, then send the batch with the same --voice "
            "and --greeting-text (it reuses this greeting's speech)"
        )
    return code
