"""The rep's own list back, with a link per prospect: `greetings export`.

A rep imports a CSV of prospects into their outreach tool (Outreach, Salesloft, HubSpot, Apollo,
lemlist) and uses its columns as merge fields. The export writes that same CSV, row for row, in
its order, every original column kept as it was, plus the video's columns: `status`,
`videoLink`, `thumbnailUrl` (the poster JPEG), `gifUrl` (the animated GIF with the first name)
and `error`. A row whose name was skipped at submit says why; a row re-exported keeps one set
of the new columns, refreshed.

Rows and jobs are matched by the job's `batchIndex` (the row's position among the CSV's data
rows, written at submit), and by the name where a job has none. Plain functions: the command
reads the jobs and the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from greetings.client.prospects import names_from_csv

NEW_COLUMNS = ("status", "videoLink", "thumbnailUrl", "gifUrl", "error")
LIST_COLUMNS = ("prospectName", "firstName", "pronunciation")


def job_cells(job: Mapping[str, Any]) -> dict[str, str]:
    """A job's new columns: its share page (for as long as it is not revoked; else the owner's
    signed link, valid for 7 days), the thumbnails' links, or its error in words."""
    error = job.get("error")
    error_text = ""
    if isinstance(error, Mapping) and job.get("status") == "failed":
        error_text = f"{error.get('code')}: {error.get('message')}"
    return {
        "status": str(job.get("status") or ""),
        "videoLink": str(
            (None if job.get("shareRevoked") else job.get("shareUrl"))
            or job.get("downloadUrl")
            or ""
        ),
        "thumbnailUrl": str(job.get("posterUrl") or ""),
        "gifUrl": str(job.get("thumbnailUrl") or ""),
        "error": error_text,
    }


def _by_row(
    jobs: Iterable[Mapping[str, Any]],
) -> tuple[dict[int, Mapping[str, Any]], dict[str, Mapping[str, Any]]]:
    rows: dict[int, Mapping[str, Any]] = {}
    names: dict[str, Mapping[str, Any]] = {}
    for job in jobs:
        index = job.get("batchIndex")
        if isinstance(index, int):
            rows[index] = job
        name = job.get("prospectName")
        if isinstance(name, str):
            names[name.casefold()] = job
    return rows, names


def export_csv(source: str, jobs: Iterable[Mapping[str, Any]], source_name: str = "the CSV") -> str:
    """`source` (the CSV the jobs were made from) with the new columns filled in for each row."""
    text = source.removeprefix("\ufeff")
    table = list(csv.reader(io.StringIO(text)))
    if not table:
        return ""
    header, body = table[0], table[1:]
    # Columns of an earlier export are refreshed in place, not added again.
    new = [column for column in NEW_COLUMNS if column not in header]
    out_header = header + new
    where = {column: out_header.index(column) for column in NEW_COLUMNS}

    prospects = names_from_csv(text, source_name)
    skipped = {s.row: s.reason for s in prospects.skipped}
    kept = dict(zip(prospects.rows, prospects.names, strict=True))
    by_index, by_name = _by_row(jobs)

    lines: list[list[str]] = [out_header]
    data_row = -1
    for cells in body:
        if not cells:  # csv.DictReader (the submit's reader) skips blank lines: so does the count
            lines.append(cells)
            continue
        data_row += 1
        row = cells + [""] * (len(out_header) - len(cells))
        name = kept.get(data_row)
        job = by_index.get(data_row) or (by_name.get(name.casefold()) if name else None)
        if job is not None:
            values = job_cells(job)
        elif data_row in skipped:
            values = dict.fromkeys(NEW_COLUMNS, "") | {
                "status": "skipped",
                "error": skipped[data_row],
            }
        else:
            values = dict.fromkeys(NEW_COLUMNS, "") | {"status": "not sent"}
        for column, value in values.items():
            row[where[column]] = value
        lines.append(row)
    return _write(lines)


def export_jobs_csv(jobs: Iterable[Mapping[str, Any]]) -> str:
    """Without the source CSV: one row per job in the list's order, its name columns and the
    new ones."""
    ordered = sorted(
        jobs, key=lambda job: (job.get("batchIndex", 1 << 30), str(job.get("createdAt")))
    )
    lines = [[*LIST_COLUMNS, *NEW_COLUMNS]]
    for job in ordered:
        cells = job_cells(job)
        lines.append(
            [str(job.get(column) or "") for column in LIST_COLUMNS]
            + [cells[column] for column in NEW_COLUMNS]
        )
    return _write(lines)


def _write(lines: list[list[str]]) -> str:
    out = io.StringIO()
    # CRLF, as RFC 4180 and the spreadsheet programs that made most of these files write it.
    csv.writer(out, lineterminator="\r\n").writerows(lines)
    return out.getvalue()
