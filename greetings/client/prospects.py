"""Who gets a video: prospect names from the command line or a CSV, and file names made from them.

Plain functions, no I/O beyond the text handed in: the names a user gives are cleaned the way the
pipeline cleans them (`clean_name`), so a name the pipeline would refuse is reported here instead.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from flows.job import JobError
from flows.stages.validate import clean_name, clean_pronunciation, spoken_name
from greetings.errors import UsageError

NAME_COLUMNS = ("name", "prospectname", "prospect_name", "prospect name")
# An optional column saying what to call the prospect (the job's `firstName`); a blank cell is
# a first name the CRM did not have: the pipeline derives it from the name, as the page does.
FIRST_NAME_COLUMNS = ("firstname", "first_name", "first name")
# An optional column saying how to say the name the greeting says ("Sheh-VAWN" for Siobhan: the
# job's `pronunciation`); a blank cell says the name as written.
PRONUNCIATION_COLUMNS = ("pronunciation",)
SLUG_FALLBACK = "prospect"
MAX_SLUG_CHARS = 60
# Letters NFKD does not split into an ASCII base and a mark.
_ASCII_FOLD = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ł": "l", "Ł": "L",
     "þ": "th", "Þ": "Th", "œ": "oe", "Œ": "OE", "\u0131": "i"}
)  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    where: str  # e.g. "names.csv line 4" or "--name #2"
    reason: str
    row: int = -1  # the entry's position among the CSV's data rows (or the --name options)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}, skipped"


@dataclass
class Prospects:
    names: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Per name, in the same order: its explicit first name, or None to derive it from the name.
    first_names: list[str | None] = field(default_factory=list)
    # Per name, in the same order: how to say it, or None to say it as written.
    pronunciations: list[str | None] = field(default_factory=list)
    # Per name, in the same order: its entry's position among the CSV's data rows (0-based; the
    # job's `batchIndex`), so results go back to the rep's own rows in their order.
    rows: list[int] = field(default_factory=list)


# Where a name came from, the name, its first name and its pronunciation, as given.
Entry = tuple[str, str | None, str | None, str | None]


def pick_names(entries: Iterable[Entry]) -> Prospects:
    """The usable names of `(where, raw name, raw first name, raw pronunciation)` entries, in
    order; blanks, repeats and names (or first names, or pronunciations) the pipeline would refuse
    are skipped with the reason."""
    picked = Prospects()
    first_seen: dict[str, str] = {}
    for row, (where, raw, raw_first, raw_pronunciation) in enumerate(entries):
        if raw is None or not raw.strip():
            picked.skipped.append(Skipped(where, "blank name", row))
            continue
        try:
            name = clean_name(raw)
            first = None if raw_first is None else spoken_name(name, raw_first).first
            pronunciation = clean_pronunciation(raw_pronunciation)
        except JobError as exc:
            picked.skipped.append(Skipped(where, f"{raw.strip()!r}: {exc.message}", row))
            continue
        key = name.casefold()
        if key in first_seen:
            picked.skipped.append(
                Skipped(where, f"duplicate name {name!r} (first at {first_seen[key]})", row)
            )
            continue
        first_seen[key] = where
        picked.names.append(name)
        # A blank first-name cell leaves firstName unset: derived from the name by the pipeline.
        picked.first_names.append(first if raw_first is not None and raw_first.strip() else None)
        picked.pronunciations.append(pronunciation)
        picked.rows.append(row)
    return picked


def names_from_args(names: Iterable[str]) -> Prospects:
    return pick_names((f"--name #{i}", name, None, None) for i, name in enumerate(names, start=1))


def names_from_csv(text: str, source: str) -> Prospects:
    """Names from a CSV with a header naming a `name` (or `prospectName`) column, and
    optionally a `firstName` (or `first_name`) column and a `pronunciation` column."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
    header = reader.fieldnames
    if not header:
        raise UsageError(f"{source} is empty: it needs a header row with a `name` column")
    column = next((c for c in header if c and c.strip().casefold() in NAME_COLUMNS), None)
    if column is None:
        shown = ", ".join(repr(c) for c in header[:6])
        raise UsageError(
            f"{source} has no `name` (or `prospectName`) column; its header is {shown}"
        )

    first = next((c for c in header if c and c.strip().casefold() in FIRST_NAME_COLUMNS), None)
    said = next((c for c in header if c and c.strip().casefold() in PRONUNCIATION_COLUMNS), None)

    def rows() -> Iterable[Entry]:
        for row in reader:
            # line_num is the row's last physical line (a quoted name may span lines).
            given = (row.get(first) or "") if first else None
            pronunciation = row.get(said) if said else None
            yield f"{source} line {reader.line_num}", row.get(column), given, pronunciation

    return pick_names(rows())


def slugify(name: str) -> str:
    """`name` as ascii lowercase letters, digits and dashes (never empty)."""
    folded = unicodedata.normalize("NFKD", name.translate(_ASCII_FOLD))
    ascii_only = folded.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")
    return slug[:MAX_SLUG_CHARS].rstrip("-") or SLUG_FALLBACK


def output_filename(prospect_name: str, job_id: str) -> str:
    """`<name-slug>-<jobId>.mp4`; a job id can hold no path separator, but is kept tame anyway."""
    safe_id = re.sub(r"[^A-Za-z0-9_-]+", "-", job_id).strip("-") or "job"
    return f"{slugify(prospect_name)}-{safe_id}.mp4"
