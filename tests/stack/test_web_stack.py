"""The web page in a real browser against the running stack (web/tests/page.test.mjs).

Node's test runner drives Debian's headless Chromium through playwright-core: a user signs up in
the page, uploads the sample, follows three jobs to "Done", downloads one, cancels one and sees a
failure. This wrapper gives it the stack, the sample clip and where to put what it makes, then
checks the video the browser downloaded is a real rendered greeting video.

`test_web_csv_first_name_column` drives the page on its own (a short node script): a CSV with a
`first_name` column gives each job its `firstName`, and the greeting spoken says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_elevenlabs import FakeElevenLabs
from tests.support.mediacheck import correlation, decode_pcm, packets
from tests.support.stackkit import read_job, wait_finished

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".greetings" / "artifacts" / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NODE_TIMEOUT_S = 900  # generous: two cores, and other suites may share the stack
GREETING_END_S = 1.5  # what the page test submits


def node_test(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "--test", "--test-reporter=spec", "web/tests/"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM}")
def test_web_page_in_a_browser(stack: Any, sample_video: Path, tmp_path: Path) -> None:
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node_modules lacks playwright-core: run `npm ci`")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    download = tmp_path / "downloaded.mp4"

    began = time.monotonic()
    result = node_test(
        {
            "GREETINGS_WEB_URL": stack.s.web_url,
            "GREETINGS_SAMPLE_VIDEO": str(sample_video),
            "GREETINGS_ARTIFACTS": str(ARTIFACTS),
            "GREETINGS_DOWNLOAD_TO": str(download),
        }
    )
    print(f"node --test web/tests/ took {time.monotonic() - began:.1f} s")
    # The figures the browser test measures (a 400-job batch's render, scrolling, ...).
    for line in result.stdout.splitlines():
        if line.startswith(("batch of ", "batch ETA:", "fit check:", "edit and retry:", "axe on ")):
            print(line)
    if result.returncode != 0:
        print(result.stdout[-30000:])
        print(result.stderr[-5000:])
    assert result.returncode == 0, f"node --test exited {result.returncode} (its output is above)"

    screenshots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    for name in ("01-sign-in", "02-batch-form", "03-uploading", "04-running", "05-completed-jobs"):
        assert f"{name}.png" in screenshots, screenshots
    assert "06-cancelled-failed.png" in screenshots and "07-phone-360.png" in screenshots

    # The browser's download is the rendered greeting video: the input's video stream, copied;
    # audio as long as the input's; a new greeting at the head and the original after it.
    assert download.stat().st_size > 10_000
    assert [p.md5 for p in packets(download, "v:0")] == [p.md5 for p in packets(sample_video)]
    out = decode_pcm(download)
    original = decode_pcm(sample_video, sample_rate=out.sample_rate, channels=out.channels)
    out_s, original_s = out.frames / out.sample_rate, original.frames / original.sample_rate
    assert abs(out_s - original_s) <= 0.05, (out_s, original_s)
    tail, head = (GREETING_END_S + 1.5, None), (0.05, GREETING_END_S - 0.1)
    assert correlation(out.window(*tail), original.window(*tail)) > 0.99
    assert correlation(out.window(*head), original.window(*head)) < 0.9


# Signs up in the page, chooses the video, loads the CSV, creates the jobs; prints what the page
# showed and the rows that appeared, as one `RESULT {json}` line.
CSV_PAGE_SCRIPT = r"""
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const env = process.env;
const STEP = 60_000;
const browser = await chromium.launch({
  executablePath: env.CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('pageerror', (error) => problems.push(error.message));
  await page.goto(env.WEB_URL, { waitUntil: 'domcontentloaded' });
  await page.locator('#signin').waitFor({ state: 'visible', timeout: STEP });
  await page.fill('#email', `web-first-${randomBytes(6).toString('hex')}@example.com`);
  await page.fill('#password', 'secret-123');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#app').waitFor({ state: 'visible', timeout: STEP });
  await page.setInputFiles('#video-file', env.VIDEO);
  await page.waitForFunction(
    () => document.querySelector('#preview-video').readyState >= 1, null, { timeout: STEP },
  );
  await page.fill('#greeting-end', env.GREETING_END);
  if (env.VOICE.startsWith('espeak:')) {
    await page.selectOption('#voice', env.VOICE);
  } else {
    await page.selectOption('#voice', 'elevenlabs');
    await page.fill('#voice-id', env.VOICE);
  }
  await page.setInputFiles('#names-csv', {
    name: 'prospects.csv', mimeType: 'text/csv', buffer: Buffer.from(env.CSV),
  });
  await page.locator('#csv-loaded').waitFor({ state: 'visible', timeout: STEP });
  const summary = await page.textContent('#names-count');
  const skipped = await page.$$eval('#names-skipped li', (lis) => lis.map((li) => li.textContent));
  await page.click('#submit-batch');
  // The upload, then the fit check (a flow run that speaks each name), then the jobs: the
  // check waits its turn on a busy worker, so this waits as long as the page itself would.
  await page.waitForFunction(
    () => ['#batch-done', '#batch-error', '#fit-check']
      .some((id) => !document.querySelector(id).hidden),
    null, { timeout: 150_000, polling: 100 },
  );
  const error = await page.$eval('#batch-error', (el) => (el.hidden ? '' : el.textContent));
  if (error) throw new Error(`the page refused the batch: ${error}`);
  const fit = await page.$eval('#fit-check', (el) => (el.hidden ? '' : el.textContent));
  if (fit) throw new Error(`the fit check stopped names that fit: ${fit}`);
  const done = await page.textContent('#batch-done');
  const expected = Number(env.EXPECTED_JOBS);
  await page.waitForFunction(
    (n) => document.querySelectorAll('#job-list > li.job').length >= n,
    expected, { timeout: STEP, polling: 100 },
  );
  const rows = await page.$$eval('#job-list > li.job', (lis) => lis.map((li) => ({
    id: li.dataset.jobId, name: li.querySelector('.job-name').textContent,
  })));
  console.log(`RESULT ${JSON.stringify({ summary, skipped, done, rows, problems })}`);
} finally {
  await browser.close();
}
"""


@pytest.mark.stack
@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs chromium at {CHROMIUM}")
def test_web_csv_first_name_column(
    stack: Any, clients: Any, fake_elevenlabs: FakeElevenLabs | None, sample_video: Path
) -> None:
    """A CSV with a `first_name` column (any case): a non-blank cell is the job's `firstName`
    (trimmed), a blank one leaves it to the pipeline, a bad one skips its row with the reason."""
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("node_modules lacks playwright-core: run `npm ci`")
    # Hosting serves web/public from disk: the browser gets the bundle built from web/src now.
    subprocess.run(["npm", "run", "--silent", "build:web"], cwd=ROOT, check=True, timeout=120)
    # Spoken by the fake ElevenLabs (which records the text) when this session serves it.
    voice = "espeak:en-us"
    if fake_elevenlabs is not None:
        voice = f"webfirst{uuid.uuid4().hex[:12]}"  # an ElevenLabs id's shape: 20 alphanumerics
        fake_elevenlabs.add_voice(voice)
    csv = (
        "Name,First_Name,Company\r\n"
        "Dr. Anna-Lena Smith,  Annie  ,Acme\r\n"
        "Robert Jones,,Initech\r\n"
        "Kim Lee,$(id),Hooli\r\n"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", CSV_PAGE_SCRIPT],
        cwd=ROOT,
        env={
            **os.environ,
            "WEB_URL": stack.s.web_url,
            "CHROMIUM": CHROMIUM,
            "VIDEO": str(sample_video),
            "GREETING_END": str(GREETING_END_S),
            "VOICE": voice,
            "CSV": csv,
            "EXPECTED_JOBS": "2",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, f"{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    shown = json.loads(lines[-1].removeprefix("RESULT "))
    assert shown["problems"] == [], shown["problems"]

    # What the page showed before creating the jobs.
    assert shown["summary"] == (
        "2 names (1 with a first name from the CSV): Dr. Anna-Lena Smith, Robert Jones"
    )
    assert len(shown["skipped"]) == 1, shown["skipped"]
    assert shown["skipped"][0].startswith('prospects.csv line 4: "Kim Lee": first name "$(id)"')
    assert "cannot be spoken" in shown["skipped"][0]
    assert "2 videos are on the way" in shown["done"]

    # The documents: firstName from the cell, trimmed; none at all for the blank cell.
    ids = {row["name"]: row["id"] for row in shown["rows"]}
    assert sorted(ids) == ["Dr. Anna-Lena Smith", "Robert Jones"], shown["rows"]
    anna = read_job(clients, ids["Dr. Anna-Lena Smith"])
    robert = read_job(clients, ids["Robert Jones"])
    assert anna["firstName"] == "Annie"
    assert "firstName" not in robert, robert
    assert anna["batchId"] == robert["batchId"]

    # And the greeting spoken: "Annie" from the CSV, "Robert" derived from the name.
    for job_id in ids.values():
        job = wait_finished(clients, job_id, 300)
        assert job["status"] == "completed", job.get("error")
    if fake_elevenlabs is not None:
        texts = {r.body.get("text") for r in fake_elevenlabs.requests if r.voice_id == voice}
        assert texts == {"Hey Annie,", "Hey Robert,"}, texts
