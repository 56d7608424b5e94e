"""The command's and the local stack's settings: the worker's (flows/settings.py) and more.

The emulator ports, the Prefect server's address and the end user's production client live here,
not in the worker's settings: the worker image has no firebase.json. The emulator ports' defaults
come from `firebase.json`, so the emulators and the Python side can never disagree; a
`GREETINGS_<NAME>_PORT` variable overrides one.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from pydantic import Field, SecretStr

from flows.settings import Settings

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


class StackSettings(Settings):
    # --- The local stack ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    firestore_port: int = Field(default_factory=lambda: _port("firestore"))
    firestore_websocket_port: int = 9150
    auth_port: int = Field(default_factory=lambda: _port("auth"))
    functions_port: int = Field(default_factory=lambda: _port("functions"))
    storage_port: int = Field(default_factory=lambda: _port("storage"))
    hub_port: int = Field(default_factory=lambda: _port("hub"))
    logging_port: int = Field(default_factory=lambda: _port("logging"))
    hosting_port: int = Field(default_factory=lambda: _port("hosting"))  # the web page
    # The stack's stand-in for Storage in browsers (signed PUT, CORS): stack/storage_proxy.py
    storage_proxy_port: int = 9198
    prefect_port: int = 4200
    # Set in production (Prefect Cloud or a self-hosted server); empty means the local stack's.
    prefect_api_url: str = ""

    # --- The end user's client in production (greetings/client/session.py) --------------------
    # The user's Firebase ID token (what a web app's getIdToken() returns); unset: local stack.
    id_token: SecretStr | None = None
    firestore_url: str = "https://firestore.googleapis.com/v1"
    firebase_storage_url: str = "https://firebasestorage.googleapis.com/v0"

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


@cache
def get_settings() -> StackSettings:
    return StackSettings()
