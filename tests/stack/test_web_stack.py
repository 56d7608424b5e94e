"""The web page in a real browser against the running stack (web/tests/page.test.mjs).

Node's test runner drives Debian's headless Chromium through playwright-core: a user signs up in
the page, uploads the sample, follows three jobs to "Done", downloads one, cancels one and sees a
failure. This wrapper gives it the stack, the sample clip and where to put what it makes, then
checks the video the browser downloaded is a real rendered greeting video.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.mediacheck import correlation, decode_pcm, packets

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
