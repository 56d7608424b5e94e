"""`greetings export BATCH_ID... [--from CSV] [--csv OUT]`: the rep's list with a video link,
thumbnails and status per prospect, for the outreach tool (greetings/client/export.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.job import COLLECTION
from greetings.client.export import export_csv, export_jobs_csv
from greetings.client.session import connect
from greetings.commands.submit import read_csv_file
from greetings.errors import UsageError
from greetings.settings import get_settings


def export_command(args: argparse.Namespace) -> int:
    source = None if args.source is None else read_csv_file(args.source)
    session = connect(get_settings(), args.user)
    wanted = set(args.batch_ids)
    jobs = [
        job
        for job in session.firestore.list_mine(COLLECTION, session.user.uid)
        if job.get("batchId") in wanted
    ]
    if not jobs:
        raise UsageError(f"no jobs of yours in batch {', '.join(sorted(wanted))}")
    text = export_csv(source, jobs, Path(args.source).name) if source else export_jobs_csv(jobs)
    if args.csv == "-":
        sys.stdout.write(text)
    else:
        Path(args.csv).write_text(text, encoding="utf-8", newline="")
        done = sum(job.get("status") == "completed" for job in jobs)
        print(f"wrote {args.csv}: {done} of {len(jobs)} videos ready", file=sys.stderr)
    return 0
