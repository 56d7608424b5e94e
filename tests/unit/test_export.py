"""`greetings export`: the rep's own CSV back, row for row, with a link per prospect."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from greetings.client.export import NEW_COLUMNS, export_csv, export_jobs_csv
from greetings.client.prospects import names_from_csv

FIRST = ["Anna-Lena", "José", "Nguyễn", "Siobhan", "Zoë", "Łukasz", "Αλέξανδρος", "Дмитрий"]
LAST = ["Smith", "García Márquez", "Thị Minh", "O'Brien", "van der Berg", "Wójcik"]
# The web page's export (web/src/export-csv.js) is checked against these same bytes.
WEB_FIXTURES = Path(__file__).resolve().parents[2] / "web" / "tests" / "fixtures"


def crm_csv() -> str:
    """40 prospects as a CRM exports them: extra columns, quoted commas and quotes, a line
    break inside a cell, a blank name and a repeated one, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Email", "name", "Company", "Notes", "firstName"])
    for i in range(40):
        name = f"Dr. {FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}-{i}"
        company = f"Acme {i}, Inc." if i % 3 == 0 else f'The "Best" Co {i}'
        notes = "met at SaaStr\nfollow up in Q1" if i == 7 else ""
        if i == 12:
            name = "   "  # blank: skipped at submit
        if i == 20:
            name = f"Dr. {FIRST[19 % len(FIRST)]} {LAST[19 % len(LAST)]}-19"  # a repeat of 19
        writer.writerow([f"p{i}@example.com", name, company, notes, ""])
    return out.getvalue()


def jobs_for(text: str) -> list[dict[str, Any]]:
    """The jobs `greetings submit --names-csv` made from `text`, ended as a batch ends."""
    prospects = names_from_csv(text, "crm.csv")
    jobs: list[dict[str, Any]] = []
    for row, name in zip(prospects.rows, prospects.names, strict=True):
        job: dict[str, Any] = {"prospectName": name, "batchIndex": row, "batchId": "b1"}
        if row == 5:
            job |= {
                "status": "failed",
                "error": {"code": "greeting-too-long", "message": "the greeting does not fit"},
            }
        else:
            job |= {
                "status": "completed",
                "downloadUrl": f"https://storage.test/{row}.mp4?sig=a,b",
                "posterUrl": f"https://storage.test/{row}.poster.jpg",
                "thumbnailUrl": f"https://storage.test/{row}.gif",
            }
        jobs.append(job)
    return jobs


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_forty_crm_rows_come_back_unchanged_with_the_new_columns() -> None:
    source = crm_csv()
    exported = export_csv(source, jobs_for(source), "crm.csv")
    before, after = parse(source), parse(exported)
    assert len(after) == len(before) == 41
    assert after[0] == before[0] + list(NEW_COLUMNS)
    for original, row in zip(before[1:], after[1:], strict=True):
        assert row[: len(original)] == original  # every original cell, quotes and all
    new = [dict(zip(NEW_COLUMNS, row[5:], strict=True)) for row in after[1:]]
    assert new[0] == {
        "status": "completed",
        "videoLink": "https://storage.test/0.mp4?sig=a,b",
        "thumbnailUrl": "https://storage.test/0.poster.jpg",
        "gifUrl": "https://storage.test/0.gif",
        "error": "",
    }
    assert new[5]["status"] == "failed" and new[5]["error"].startswith("greeting-too-long: ")
    assert new[7]["status"] == "completed"  # the cell with a line break kept its row
    assert (new[12]["status"], new[12]["error"]) == ("skipped", "blank name")
    assert new[20]["status"] == "skipped" and "duplicate name" in new[20]["error"]
    assert sum(n["status"] == "completed" for n in new) == 37


def test_a_re_export_refreshes_its_columns_instead_of_adding_more() -> None:
    source = crm_csv()
    jobs = jobs_for(source)
    once = export_csv(source, jobs, "crm.csv")
    jobs[5] |= {"status": "completed", "downloadUrl": "https://storage.test/5.mp4"}
    twice = export_csv(once, jobs, "crm.csv")
    assert parse(twice)[0] == parse(once)[0]
    assert parse(twice)[6][5:7] == ["completed", "https://storage.test/5.mp4"]


def test_jobs_matched_by_name_where_they_have_no_row() -> None:
    source = "name,Company\r\nAda Lovelace,Analytical\r\nAlan Turing,Bletchley\r\n"
    jobs = [{"prospectName": "Alan Turing", "status": "completed", "downloadUrl": "u"}]
    rows = parse(export_csv(source, jobs))
    assert [r[2] for r in rows[1:]] == ["not sent", "completed"]


def test_without_the_csv_one_row_per_job_in_the_lists_order() -> None:
    jobs = [
        {"prospectName": "B", "batchIndex": 1, "status": "completed", "downloadUrl": "u1"},
        {"prospectName": "A", "batchIndex": 0, "status": "failed", "firstName": "Al",
         "error": {"code": "input-not-video", "message": "not a video"}},
    ]  # fmt: skip
    rows = parse(export_jobs_csv(jobs))
    assert rows[0] == ["prospectName", "firstName", "pronunciation", *NEW_COLUMNS]
    assert rows[1][:4] == ["A", "Al", "", "failed"]
    assert rows[1][-1] == "input-not-video: not a video"
    assert rows[2][:5] == ["B", "", "", "completed", "u1"]


def test_the_video_link_is_the_share_page_while_it_is_shared() -> None:
    job = {"status": "completed", "downloadUrl": "https://signed", "shareUrl": "https://x/v/s"}
    rows = parse(export_jobs_csv([job]))
    assert rows[1][4] == "https://x/v/s"
    rows = parse(export_jobs_csv([{**job, "shareRevoked": True}]))
    assert rows[1][4] == "https://signed"


def test_the_web_page_exports_the_same_bytes() -> None:
    """web/tests/export-csv.test.mjs holds the page's port to these files: a change here that
    they miss fails one of the two, so the page and the command give the rep the same file."""
    source = crm_csv()
    jobs = jobs_for(source)
    assert (WEB_FIXTURES / "crm.csv").read_bytes() == source.encode()
    exported = export_csv(source, jobs, "crm.csv")
    assert (WEB_FIXTURES / "crm-with-links.csv").read_bytes() == exported.encode()
    assert (WEB_FIXTURES / "crm-list.csv").read_bytes() == export_jobs_csv(jobs).encode()
