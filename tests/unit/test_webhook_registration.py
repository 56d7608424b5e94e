"""Registering a webhook (triggers/webhooks.py): the URLs that can never work are refused in
words, at once; the rest is checked again at every delivery (flows/webhooks.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import webhooks  # triggers/, flat as the Functions runtime imports it
from webhooks import WebhookRefused, check_url, parse_registration


def resolving_to(*addresses: str) -> webhooks.Resolver:
    def resolve(host: str) -> Sequence[str]:
        return addresses

    return resolve


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/in", "must use https"),
        ("ftp://hooks.example.com/in", "must use https"),
        ("https://user:pw@hooks.example.com/in", "user name or password"),
        ("https:///in", "no host"),
        ("https://hooks.example.com:99999/in", "not a URL"),
        ("https://10.1.2.3/in", "internal address"),
        ("https://169.254.169.254/latest/meta-data", "internal address"),
        ("https://[::1]/in", "internal address"),
        ("https://localhost/in", "internal address"),  # resolves to loopback
        ("https://" + "a" * 2048 + ".com/", "longer than"),
        ("", "give the endpoint's URL"),
    ],
)
def test_urls_that_can_never_work_are_refused_in_words(url: str, words: str) -> None:
    with pytest.raises(WebhookRefused, match=words):
        check_url(url, allow_loopback=False, resolve=resolving_to("127.0.0.1"))


def test_a_host_that_resolves_inside_is_refused() -> None:
    with pytest.raises(WebhookRefused, match=r"internal address \(192\.168\.0\.7\)"):
        check_url(
            "https://hooks.example.com/in",
            allow_loopback=False,
            resolve=resolving_to("93.184.215.14", "192.168.0.7"),
        )


def test_a_public_https_url_is_taken() -> None:
    url = "https://hooks.example.com/in?team=7"
    assert check_url(url, allow_loopback=False, resolve=resolving_to("93.184.215.14")) == url


def test_loopback_http_only_in_the_emulator() -> None:
    url = "http://127.0.0.1:8123/hooks"
    assert check_url(url, allow_loopback=True) == url
    with pytest.raises(WebhookRefused):
        check_url(url, allow_loopback=False)
    with pytest.raises(WebhookRefused, match="internal address"):
        check_url("https://10.0.0.1/hooks", allow_loopback=True)


def test_events_default_to_all_and_unknown_ones_are_refused() -> None:
    public = resolving_to("93.184.215.14")
    url = "https://hooks.example.com/in"
    assert parse_registration({"url": url}, allow_loopback=False, resolve=public).events == list(
        webhooks.EVENTS
    )
    chosen = {"url": url, "events": ["video.failed", "video.ready", "video.ready"]}
    registration = parse_registration(chosen, allow_loopback=False, resolve=public)
    assert registration.events == ["video.ready", "video.failed"]
    with pytest.raises(WebhookRefused, match="events must be"):
        parse_registration(
            {"url": url, "events": ["video.deleted"]}, allow_loopback=False, resolve=public
        )
