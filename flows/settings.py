"""Settings of the workers, the CLI and the local stack, from environment variables.

Every variable is `GREETINGS_<FIELD>` (e.g. `GREETINGS_ELEVENLABS_API_KEY`), read from the process
environment and from a `.env` file in the working directory. Emulator ports are the exception:
their defaults come from `firebase.json`, so the emulators and the Python side can never disagree.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
FIREBASE_JSON = REPO_ROOT / "firebase.json"


@cache
def firebase_emulator_ports() -> dict[str, int]:
    """The emulator ports firebase.json declares, by emulator name (`firestore`, `auth`, ...)."""
    config = json.loads(FIREBASE_JSON.read_text())
    return {
        name: int(entry["port"])
        for name, entry in config.get("emulators", {}).items()
        if isinstance(entry, dict) and "port" in entry
    }


def _port(name: str) -> int:
    return firebase_emulator_ports()[name]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GREETINGS_", env_file=".env", extra="ignore", frozen=True
    )

    # --- Firebase project and the local stack -------------------------------------------------
    project_id: str = "demo-greetings"
    bucket: str = ""  # default bucket; empty means "<project_id>.appspot.com"
    state_dir: Path = REPO_ROOT / ".greetings"
    host: str = "127.0.0.1"
    firestore_port: int = Field(default_factory=lambda: _port("firestore"))
    firestore_websocket_port: int = 9150
    auth_port: int = Field(default_factory=lambda: _port("auth"))
    functions_port: int = Field(default_factory=lambda: _port("functions"))
    storage_port: int = Field(default_factory=lambda: _port("storage"))
    hub_port: int = Field(default_factory=lambda: _port("hub"))
    logging_port: int = Field(default_factory=lambda: _port("logging"))
    hosting_port: int = Field(default_factory=lambda: _port("hosting"))  # the web page
    # The stack's stand-in for Storage in browsers (signed PUT, CORS):
    # greetings/stack/storage_proxy.py
    storage_proxy_port: int = 9198
    prefect_port: int = 4200
    # Set in production (Prefect Cloud or a self-hosted server); empty means the local stack's.
    prefect_api_url: str = ""
    work_pool: str = "greetings-local"
    # Flow runs the local (in-process) worker runs at once.
    worker_threads: int = 8
    # Jobs of one batch (flows/batch.py) a flow run works on at once.
    batch_concurrency: int = 4

    # --- The end user's client in production (greetings/client/session.py) --------------------
    # The user's Firebase ID token (what a web app's getIdToken() returns); unset: local stack.
    id_token: SecretStr | None = None
    firestore_url: str = "https://firestore.googleapis.com/v1"
    firebase_storage_url: str = "https://firebasestorage.googleapis.com/v0"

    # Where browsers fetch results when Storage itself is not reachable from them: locally the
    # stack's Storage proxy (the emulator answers no CORS). Empty: signed URLs (production) or
    # the emulator's own address.
    storage_public_url: str = ""

    # --- Input limits (validating-input) ------------------------------------------------------
    max_input_bytes: int = 500 * 1024 * 1024
    max_input_seconds: float = 600.0

    # --- Speech (processing-audio) ------------------------------------------------------------
    # "auto": ElevenLabs when a key is configured, else the local espeak-ng voice.
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
    # Where synthesized greetings are cached across runs and workers: a folder, or gs://bucket/path.
    speech_cache: str = ""  # empty means "<state_dir>/speech-cache"

    # --- Rendering (generating-video) ---------------------------------------------------------
    max_tempo: float = 1.3
    crossfade_ms: int = 40

    # --- Retries and the sweep ----------------------------------------------------------------
    max_retries: int = 3
    # Before retry n (1-based) the sweep waits retry_backoff_seconds * 2**(n-1) after the failure.
    retry_backoff_seconds: float = 60.0
    # A running job whose heartbeat is older than this has lost its worker.
    heartbeat_stale_seconds: float = 120.0
    # A pending job without a flow run after this long lost its trigger (or Prefect was down).
    pending_grace_seconds: float = 60.0

    @property
    def default_bucket(self) -> str:
        return self.bucket or f"{self.project_id}.appspot.com"

    @property
    def speech_cache_location(self) -> str:
        return self.speech_cache or str(self.state_dir / "speech-cache")

    @property
    def prefect_api(self) -> str:
        return self.prefect_api_url or f"http://{self.host}:{self.prefect_port}/api"

    @property
    def firestore_emulator_host(self) -> str:
        return f"{self.host}:{self.firestore_port}"

    @property
    def auth_emulator_host(self) -> str:
        return f"{self.host}:{self.auth_port}"

    @property
    def storage_emulator_host(self) -> str:
        return f"http://{self.host}:{self.storage_port}"

    @property
    def storage_proxy_url(self) -> str:
        return f"http://{self.host}:{self.storage_proxy_port}"

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.hosting_port}"

    @property
    def use_elevenlabs(self) -> bool:
        if self.tts_provider == "auto":
            return self.elevenlabs_api_key is not None
        return self.tts_provider == "elevenlabs"


@cache
def get_settings() -> Settings:
    return Settings()
