"""The worker's settings, from environment variables: what a flow run needs and nothing else.

Every variable is `GREETINGS_<FIELD>` (e.g. `GREETINGS_ELEVENLABS_API_KEY`), read from the process
environment and from a `.env` file in the working directory. Nothing here reads a file of the
repository: the worker image holds `flows/` and its configuration only. The local stack and the
command add their own settings on top (greetings/settings.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.media import SandboxMode

# The folder that holds flows/: the repository, or /opt/greetings in the worker image.
CODE_ROOT = Path(__file__).resolve().parent.parent


def default_bucket_name(project_id: str, environ: Mapping[str, str]) -> str:
    """The project's default Storage bucket when GREETINGS_BUCKET does not name one.

    Firebase's runtimes say it in FIREBASE_CONFIG (JSON, or the path of a JSON file). Elsewhere:
    projects created since 2024-10-30 get `<project>.firebasestorage.app`, older ones
    `<project>.appspot.com` (those set GREETINGS_BUCKET), and the emulators' `demo-*` projects
    use `<project>.appspot.com`.
    """
    config = environ.get("FIREBASE_CONFIG", "").strip()
    if config:
        text = config if config.startswith("{") else Path(config).read_text()
        bucket = json.loads(text).get("storageBucket")
        if isinstance(bucket, str) and bucket:
            return bucket
    if project_id.startswith("demo-"):
        return f"{project_id}.appspot.com"
    return f"{project_id}.firebasestorage.app"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREETINGS_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Firebase project, Prefect and the worker ---------------------------------------------
    project_id: str = "demo-greetings"
    bucket: str = ""  # the uploads' and results' bucket; empty: `default_bucket_name`
    # Scratch folders of runs (work/) and, unless speech_cache says otherwise, the speech cache.
    state_dir: Path = CODE_ROOT / ".greetings"
    work_pool: str = "greetings-local"
    # Flow runs the in-process worker (flows/worker.py) runs at once. Threads, not cores: the
    # media work is bounded per user (media_slots_per_user), so a waiting run costs little.
    worker_threads: int = 16
    # Jobs of one batch (flows/batch.py) a flow run works on at once. 6 on 2 cores: a job now
    # spends much of its time waiting (Storage, Firestore, its mux), and 100-job batches made
    # 139-141 videos a minute at 4 against 150-161 at 6 (8: 152).
    batch_concurrency: int = 6
    # Where browsers fetch results when Storage itself is not reachable from them: locally the
    # stack's Storage proxy (the emulator answers no CORS). Empty: signed URLs (production) or
    # the emulator's own address.
    storage_public_url: str = ""
    # The service-account key file results' download URLs are signed with against the Storage
    # emulator: the local stack's own (`stack up` generates it; its Storage proxy serves only
    # what it signed). Unset in production, where the URLs are signed through IAM.
    storage_signer_key_file: Path | None = None

    # --- Input limits (validating-input) ------------------------------------------------------
    max_input_bytes: int = 500 * 1024 * 1024
    max_input_seconds: float = 600.0
    # A batch's video once per job (flows/batch.py): more minutes of it than this fail every job
    # of the batch `batch-too-large`. 4000: 400 names (the largest batch) on a 10-minute video.
    max_batch_media_minutes: float = 4000.0

    # --- Speech (processing-audio) ------------------------------------------------------------
    # "auto": ElevenLabs when a key is configured, else the local voice (`local_voice`).
    tts_provider: Literal["auto", "elevenlabs", "espeak"] = "auto"
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str | None = None  # None: the SDK's production endpoint
    elevenlabs_model_id: str = "eleven_multilingual_v2"
    elevenlabs_output_format: str = "mp3_44100_128"
    elevenlabs_timeout_seconds: float = 30.0
    elevenlabs_stability: float = 0.5
    elevenlabs_similarity_boost: float = 0.75
    # The plan's concurrent-request allowance: a Prefect global concurrency limit of this size.
    elevenlabs_concurrency: int = 2
    espeak_voice: str = "en-us"
    # The voice without an ElevenLabs key (and for voiceId "clone" there): "piper", the natural
    # Piper voice piper:joe where its wheel is installed (else espeak-ng), or "espeak".
    local_voice: Literal["piper", "espeak"] = "piper"
    # Where synthesized greetings are cached across runs and workers: a folder, or gs://bucket/path.
    speech_cache: str = ""  # empty means "<state_dir>/speech-cache"
    # voiceId "clone" (flows/stages/clone.py): the rep's voice cloned from their upload, once.
    # Seconds taken from the upload's start; speech (pauses over 1 s cut) the clone needs at least.
    voice_clone_seconds: float = 60.0
    voice_clone_min_speech_seconds: float = 10.0
    # A worker's claim on making a clone; others wait for it, and take over once it lapses.
    voice_clone_lease_seconds: float = 180.0
    # How long a job waits for another worker's clone before it fails (retryable).
    voice_clone_wait_seconds: float = 1200.0

    # --- Rendering (generating-video) ---------------------------------------------------------
    max_tempo: float = 1.3
    crossfade_ms: int = 40
    # Every ffmpeg/ffprobe process of a job: wall-clock and CPU seconds, address space. A head
    # render of an allowed video takes about a second and a whole-audio re-encode of 600 s a few,
    # so these only ever stop a hostile or broken input.
    media_timeout_seconds: float = 120.0
    # ... plus this much per second of the input, once its length is known: re-encoding a
    # browser's VP8 video to H.264 takes about a second per second of 1080p here.
    media_seconds_per_input_second: float = 1.0
    media_memory_mb: int = 1024
    # ffmpeg/ffprobe processes one user may run at once on a worker: another user's job never
    # waits behind them. As many as a batch works on at once.
    media_slots_per_user: int = 4
    # Each job's media processes in a bubblewrap sandbox of its own folder (flows/media.py
    # `confined_to`). "auto": where bwrap works here (it needs user namespaces); "bwrap": a job
    # that cannot be sandboxed fails instead of running without one; "off": never.
    sandbox: SandboxMode = "auto"
    # A poster JPEG and an animated GIF with the first name for each video, for the rep's emails
    # (flows/stages/thumbnails.py): about 0.75 CPU s per lone job on a 720p video; in a batch,
    # 0.9 s once for its upload and then 0.16 s per job.
    thumbnails: bool = True

    # --- Share pages (flows/shares.py) ---------------------------------------------------------
    # Where the web page is served: a job's share link is <this>/v/<shareId>. Empty: the
    # project's Hosting site, https://<project>.web.app.
    share_base_url: str = ""

    # --- Webhooks (flows/webhooks.py, flows/deliveries.py) --------------------------------------
    # One attempt's whole time, connection to answer: a receiver that hangs costs no more. Under
    # the 60 s a deliverer's claim on a delivery lasts (flows/webhooks.py CLAIM_LEASE), so that no
    # other deliverer sends the same attempt while it waits.
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=45)
    # Endpoints on 127.0.0.1 / ::1 over http: for the local stack and the tests only. Private,
    # link-local and other internal addresses stay refused either way.
    webhooks_allow_loopback: bool = False

    # --- Retries and the sweep ----------------------------------------------------------------
    max_retries: int = 3
    # Before retry n (1-based) the sweep waits retry_backoff_seconds * 2**(n-1) after the failure.
    retry_backoff_seconds: float = 60.0
    # A running job whose heartbeat is older than this has lost its worker.
    heartbeat_stale_seconds: float = 120.0
    # A pending job without a flow run after this long lost its trigger (or Prefect was down).
    pending_grace_seconds: float = 60.0

    @property
    def share_base(self) -> str:
        return (self.share_base_url or f"https://{self.project_id}.web.app").rstrip("/")

    @property
    def default_bucket(self) -> str:
        return self.bucket or default_bucket_name(self.project_id, os.environ)

    @property
    def speech_cache_location(self) -> str:
        return self.speech_cache or str(self.state_dir / "speech-cache")

    @property
    def use_elevenlabs(self) -> bool:
        if self.tts_provider == "auto":
            return self.elevenlabs_api_key is not None
        return self.tts_provider == "elevenlabs"


@cache
def get_settings() -> Settings:
    return Settings()
