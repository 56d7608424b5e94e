"""Share pages against the running stack: a batch of 5 completes, each video gets a page at
/v/{shareId} that plays in headless Chromium without signing in, the viewer's play and 50 %
watch reach the job's counters, and a revoked share stops playing.

Hosting (the emulator) serves the page, the `share` and `share_event` functions (the Functions
emulator, our Python) answer it, the worker made the share documents.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flows.job import COLLECTION, REQUESTS, RequestAction
from flows.lifecycle import SHARES
from greetings.client.enduser import Denied
from tests.conftest import User, wait_for
from tests.support.stackkit import as_user, create_batch, read_job, upload, wait_finished

pytestmark = pytest.mark.stack

LIVE_WITHIN_MS = 30_000  # the sweep that would otherwise catch up runs every 300 s

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NAMES = ["Ada Lovelace", "Dr. Anna-Lena Smith", "Nguyễn Văn An", "Zoë O'Brien", "Kim Lee"]

# Opens each share page as a stranger (a fresh browser, no sign-in) and plays it; the first is
# watched past half. Prints when it crossed 50 %, and what each page showed.
SHARE_SCRIPT = r"""
import { chromium } from 'playwright-core';
const urls = JSON.parse(process.env.SHARE_URLS);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--autoplay-policy=no-user-gesture-required'],
});
const seen = [];
try {
  for (const [index, url] of urls.entries()) {
    const page = await browser.newPage();
    // What the page reports, and when it sent it.
    await page.addInitScript(() => {
      const send = window.fetch;
      window.__reports = [];
      window.__pending = new Set();
      window.fetch = (target, init) => {
        if (init?.body) window.__reports.push({ ...JSON.parse(init.body), at: Date.now() });
        const sent = send(target, init);
        window.__pending.add(sent);
        sent.finally(() => window.__pending.delete(sent)).catch(() => {});
        return sent;
      };
    });
    // Where the video's loads went: what the test says when a page shows no video.
    const loads = [];
    const media = (r) => r.resourceType() === 'media';
    page.on('response', (r) => { if (media(r.request())) loads.push(r.status()); });
    page.on('requestfailed', (r) => { if (media(r)) loads.push(`${r.failure()?.errorText}`); });
    // The second page's first video load is dropped, as a flaky network would: the page must
    // load it again by itself.
    if (index === 1 && process.env.WATCH_HALF) {
      let dropped = false;
      await page.route(/media=video/, (route) => {
        if (dropped) return route.continue();
        dropped = true;
        return route.abort('connectionreset');
      });
    }
    await page.goto(url);
    const status = page.locator('#share-status');
    await page.waitForFunction(
      () => !document.getElementById('player').hidden
        || document.getElementById('share-status').textContent !== 'Loading…',
      null, { timeout: 30000 },
    );
    // A viewer presses play once the player has the video (the page itself loads it again
    // when a load fails), or reads what the page says instead.
    await page.waitForFunction(
      () => document.getElementById('video').readyState >= 1
        || !document.getElementById('share-status').hidden,
      null, { timeout: 60000 },
    ).catch(() => {});
    if (await page.locator('#player').isHidden()) {
      seen.push({ url, text: await status.textContent(), loads });
      await page.close();
      continue;
    }
    const until = index === 0 && process.env.WATCH_HALF ? 0.55 : 0.15;
    const result = await page.evaluate(async (fraction) => {
      const v = document.getElementById('video');
      v.muted = true;
      try {
        await v.play();
      } catch (error) {
        return { text: `${error}`, mediaError: v.error?.message, readyState: v.readyState };
      }
      while (!(v.duration > 0) || v.currentTime < fraction * v.duration) {
        await new Promise((r) => setTimeout(r, 25));
      }
      // The viewer stops here: a slow machine must not carry the video on to 75 %.
      v.pause();
      return {
        currentTime: v.currentTime, duration: v.duration, width: v.videoWidth,
        poster: Boolean(v.poster), sender: document.getElementById('sender').textContent,
        cta: document.getElementById('cta').hidden ? null : document.getElementById('cta').href,
        at: Date.now(),
      };
    }, until);
    seen.push({ url, loads, ...result });
    // The reports the page sent reach the server before the page closes (a closed page would
    // cancel them, and the job would not count a play it was sent).
    await new Promise((r) => setTimeout(r, 300));
    seen[seen.length - 1].reports = await page.evaluate(async () => {
      await Promise.allSettled([...window.__pending]);
      return window.__reports;
    });
    await page.close();
  }
  console.log(`RESULT ${JSON.stringify(seen)}`);
} finally {
  await browser.close();
}
"""


def run_pages(urls: list[str], *, watch_half: bool = False) -> list[dict[str, Any]]:
    env = {**os.environ, "CHROMIUM": CHROMIUM, "SHARE_URLS": json.dumps(urls)}
    if watch_half:
        env["WATCH_HALF"] = "1"
    result = subprocess.run(
        ["node", "--input-type=module", "-e", SHARE_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    seen: list[dict[str, Any]] = json.loads(lines[-1].removeprefix("RESULT "))
    return seen


def share_api(stack: Any) -> str:
    s = stack.s
    return f"http://{s.host}:{s.functions_port}/{s.project_id}/us-central1"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM}")
def test_each_video_has_a_share_page_that_plays_counts_and_can_be_revoked(
    stack: Any, clients: Any, make_user: Callable[[], User], sample_video: Path
) -> None:
    rep, stranger = make_user(), make_user()
    video = upload(clients, rep, sample_video)
    cta = "https://calendly.example.com/rep/15min?ref=greetings"
    _, job_ids = create_batch(
        stack, rep, video, NAMES, cta_url=cta, cta_text="Book 15 minutes", sender_name="Sam Rep"
    )
    jobs = {job_id: wait_finished(clients, job_id, 180) for job_id in job_ids}
    assert [j["status"] for j in jobs.values()] == ["completed"] * 5, [
        j.get("error") for j in jobs.values()
    ]
    share_ids = [jobs[j]["shareId"] for j in job_ids]
    assert len(set(share_ids)) == 5 and all(len(s) >= 22 for s in share_ids)  # 128 random bits
    urls = [jobs[j]["shareUrl"] for j in job_ids]
    assert urls == [f"{stack.s.web_url}/v/{s}" for s in share_ids]

    # Each page plays for a stranger (no sign-in); the first is watched past half, and its play
    # and 50 % reach the job's counters at once.
    first = job_ids[0]
    crossed: dict[str, float] = {}

    def watch_counters() -> None:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and "half" not in crossed:
            job = read_job(clients, first)
            if int(job.get("maxWatchedPercent") or 0) >= 50 and int(job.get("plays") or 0) >= 1:
                crossed["half"] = time.time() * 1000
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_counters, daemon=True)
    watcher.start()
    seen = run_pages(urls, watch_half=True)
    watcher.join(10)
    assert "half" in crossed, "the play and the 50 % watch never reached the job's counters"
    for page in seen:
        assert "text" not in page, f"the page showed no video: {page}"
        assert page["width"] == 640 and page["currentTime"] > 0, page
        assert page["poster"] and page["sender"] == "A video from Sam Rep"
        assert page["cta"] == cta
    # The dropped load was loaded again, and played.
    assert seen[1]["loads"][0] == "net::ERR_CONNECTION_RESET", seen[1]["loads"]
    sent = {(r["type"], r.get("percent")) for r in seen[0]["reports"]}
    assert sent == {("viewed", None), ("played", None), ("watched", 25), ("watched", 50)}
    [half] = [r["at"] for r in seen[0]["reports"] if r.get("percent") == 50]
    lag_ms = crossed["half"] - half
    # "At once" is the counters moving while the viewer watches, not at the next 5-minute sweep:
    # under 2 s here, printed. The bound is loose on purpose: a 2 s assert would only measure how
    # busy the machine is.
    print(f"\nthe 50 % watch reached the job's counters {lag_ms:.0f} ms after the page sent it")
    assert lag_ms < LIVE_WITHIN_MS, f"{lag_ms:.0f} ms: the counters did not move live"
    counted = read_job(clients, first)
    assert (counted["views"], counted["plays"]) == (1, 1)
    assert counted["maxWatchedPercent"] >= 50 and counted["lastViewedAt"] is not None
    # Each job counts its own viewers: the second page was played, but not to a quarter.
    second = wait_for(
        lambda: read_job(clients, job_ids[1]),
        lambda j: (j.get("views"), j.get("plays")) == (1, 1),
        30,
    )
    assert (second["views"], second["plays"], second.get("maxWatchedPercent")) == (1, 1, None)

    # A viewer reads nothing but what the function answers: not the job, not the share, not
    # its events; and nobody writes events or counters but the server.
    for who in (stranger, rep):
        with pytest.raises(Denied):
            as_user(stack, who).get(SHARES, share_ids[0])
    with pytest.raises(Denied):
        as_user(stack, stranger).get(COLLECTION, first)
    with pytest.raises(Denied):
        as_user(stack, stranger).create(
            f"{SHARES}/{share_ids[0]}/events", "e1", {"type": "played"}, ("at",)
        )
    with pytest.raises(Denied):
        as_user(stack, rep).update(COLLECTION, first, {"views": 1000})
    unknown = requests.get(
        f"{share_api(stack)}/share", params={"s": secrets.token_urlsafe(16)}, timeout=30
    )
    assert unknown.status_code == 404

    # Events are rate-limited per client address: sent until refused (a few dozen here; the
    # bucket refills while a slow machine sends, so no fixed count is promised).
    statuses: list[int] = []
    while len(statuses) < 200 and 429 not in statuses:
        statuses.append(
            requests.post(
                f"{share_api(stack)}/share_event",
                json={"s": share_ids[1], "type": "viewed", "client": "rate-limit-probe"},
                timeout=30,
            ).status_code
        )
    print(f"event {len(statuses)} from one client was the first refused")
    assert statuses[0] == 204 and statuses[-1] == 429, statuses

    # The owner revokes the first share: the page says so and its video link stops working.
    as_user(stack, rep).request(first, rep.uid, RequestAction.REVOKE_SHARE)
    wait_for(lambda: read_job(clients, first), lambda j: j.get("shareRevoked") is True, 30)
    media = requests.get(
        f"{share_api(stack)}/share",
        params={"s": share_ids[0], "media": "video"},
        allow_redirects=False,
        timeout=30,
    )
    assert media.status_code == 410
    [gone] = run_pages([urls[0]])
    assert gone["text"] == "This video is no longer shared."
    # The others still play.
    still = requests.get(
        f"{share_api(stack)}/share", params={"s": share_ids[1], "media": "video"}, timeout=30
    )
    assert still.status_code == 200 and still.headers["content-type"] == "video/mp4"
    requests_ = clients.db.collection(COLLECTION).document(first).collection(REQUESTS).stream()
    assert [r.to_dict().get("outcome") for r in requests_] == ["revoked"]
