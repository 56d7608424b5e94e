"""Share pages' own logic: ids, what a share document and a viewer's page hold, the events a
page may report and what they do to the job's counters."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import shares as page  # triggers/, flat as the Functions runtime imports it

from flows.shares import cta_url, new_share_id, share_document, share_url

AT = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
PATHS = {"videoPath": "greeting-results/u/j.mp4", "posterPath": "greeting-results/u/j.poster.jpg"}


def test_share_ids_are_128_random_bits_in_url_characters() -> None:
    ids = {new_share_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", i) for i in ids)  # 16 bytes, base64url
    assert all(page.SHARE_ID.fullmatch(i) for i in ids)
    assert share_url("http://127.0.0.1:5005/", "abc") == "http://127.0.0.1:5005/v/abc"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://calendly.example.com/rep?x=1", True),
        ("http://calendly.example.com/rep", False),
        ("javascript:alert(1)", False),
        ("https://user:pw@example.com/", False),
        ("https:///nohost", False),
        ("https://example.com/" + "a" * 2100, False),
        (42, False),
    ],
)
def test_only_https_links_become_a_button(url: object, kept: bool) -> None:
    assert (cta_url(url) is not None) is kept


def test_the_share_document_holds_the_page_and_the_paths_never_the_job() -> None:
    job = {
        "userId": "u",
        "prospectName": "Ada Lovelace",
        "ctaUrl": "https://cal.example.com/x",
        "senderName": "  Sam\\tRep ",
        "inputVideo": "user-uploads/u/x.mp4",
    }
    doc = share_document("j", job, PATHS, AT)
    assert doc == {
        "jobId": "j",
        "userId": "u",
        "senderName": "Sam\\tRep",
        "ctaText": "Learn more",  # a link without words gets the default words
        "ctaUrl": "https://cal.example.com/x",
        **PATHS,
        "revoked": False,
        "createdAt": AT,
    }
    # A control character in the name: left off, the video is not failed for it.
    assert "senderName" not in share_document("j", {**job, "senderName": "Sam\x00"}, PATHS, AT)
    # What a viewer gets: the page, and nothing of the job, the owner or the objects.
    assert page.page_view(doc) == {
        "senderName": "Sam\\tRep",
        "ctaText": "Learn more",
        "ctaUrl": "https://cal.example.com/x",
        "hasPoster": True,
        "hasGif": False,
    }


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"s": "A" * 22, "type": "deleted", "client": "abcdefgh"}, 400),
        ({"s": "A" * 22, "type": "watched", "percent": 33, "client": "abcdefgh"}, 400),
        ({"s": "A" * 22, "type": "watched", "percent": True, "client": "abcdefgh"}, 400),
        ({"s": "A" * 22, "type": "played", "client": "x"}, 400),
        ({"s": "../x", "type": "played", "client": "abcdefgh"}, 404),
        ("not an object", 400),
    ],
)
def test_malformed_events_are_refused(body: object, status: int) -> None:
    with pytest.raises(page.ShareError) as refused:
        page.parse_event(body)
    assert refused.value.status == status


def test_events_move_the_counters() -> None:
    def event(kind: str, percent: int | None = None) -> page.ViewEvent:
        body = {"s": "A" * 22, "type": kind, "client": "abcdefgh", "percent": percent}
        return page.parse_event(body)

    job = {"views": 2, "plays": 1, "maxWatchedPercent": 50}
    assert page.counter_update(job, event("viewed"), AT) == {"lastViewedAt": AT, "views": 3}
    assert page.counter_update(job, event("played"), AT) == {"lastViewedAt": AT, "plays": 2}
    assert page.counter_update(job, event("watched", 25), AT) == {"lastViewedAt": AT}
    assert page.counter_update(job, event("watched", 75), AT)["maxWatchedPercent"] == 75
    assert page.counter_update({}, event("viewed"), AT)["views"] == 1
    assert page.client_key("127.0.0.1") == page.client_key("127.0.0.1") != page.client_key("::1")
    assert "127.0.0.1" not in page.client_key("127.0.0.1")


def test_a_view_and_a_watch_mark_are_webhook_events_and_a_play_is_not() -> None:
    job = {
        "userId": "u",
        "prospectName": "Ada Lovelace",
        "batchId": "b1",
        "status": "completed",
        "shareUrl": "https://x.web.app/v/" + "A" * 22,
    }
    recorded = page.Recorded("view-1", "job-1", job)

    def made(kind: str, percent: int | None = None) -> tuple[str, dict[str, object]] | None:
        body = {"s": "A" * 22, "type": kind, "client": "viewer-1", "percent": percent}
        result: tuple[str, dict[str, object]] | None = page.view_webhook(
            recorded, "A" * 22, page.parse_event(body), AT
        )
        return result

    assert made("played") is None
    viewed = made("viewed")
    assert viewed is not None
    event_id, body = viewed
    assert body == {
        "type": "video.viewed",
        "timestamp": "2026-12-05T03:00:00Z",
        "data": {
            "jobId": "job-1",
            "batchId": "b1",
            "name": "Ada Lovelace",
            "status": "completed",
            "links": {"share": job["shareUrl"]},
            "view": {"id": "view-1", "client": "viewer-1"},
        },
    }
    watched = made("watched", 75)
    assert watched is not None and watched[1]["data"]["view"]["percent"] == 75  # type: ignore[index]
    # Each report is its own event; the same report again is the same event.
    assert event_id != watched[0] and made("viewed") == viewed
