"""Who the CLI acts as, and where it reaches Firebase: the local stack or production.

Locally (no `GREETINGS_ID_TOKEN`) the CLI signs in on the Auth emulator as a stable local user,
`local-user@greetings.test` (created on first use; `--user EMAIL` picks another), and talks to
the emulators of `greetings stack up`.

In production it acts with the user's own Firebase ID token, taken from `GREETINGS_ID_TOKEN`
(what a signed-in web app holds: `await firebase.auth().currentUser.getIdToken()`; it lasts an
hour). Firestore and Cloud Storage for Firebase then apply firestore.rules and storage.rules to
every request, exactly as for the web app. `GREETINGS_PROJECT_ID` and `GREETINGS_BUCKET` name
the project.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import cached_property

from google.auth.credentials import Credentials
from google.cloud.firestore import Client as FirestoreClient

from greetings.client.enduser import (
    FirestoreAsUser,
    SignedInUser,
    SignInError,
    identity_toolkit_url,
    sign_in_with_password,
    uid_from_id_token,
)
from greetings.client.transfer import EmulatorUploads, FirebaseStorageUploads, UploadStore
from greetings.errors import CliError, UsageError
from greetings.settings import StackSettings

LOCAL_USER = "local-user@greetings.test"
# The Auth emulator's users only: never a real account's password.
LOCAL_PASSWORD = "greetings-local-password"
STACK_HINT = "run `uv run greetings stack up` (or `make demo`)"


class StackNotRunning(CliError):
    def __init__(self, what: str, address: str) -> None:
        super().__init__(
            f"the local stack is not running ({what} at {address} does not answer): {STACK_HINT}"
        )


@dataclass
class Session:
    """A signed-in user and the clients that act for them."""

    settings: StackSettings
    user: SignedInUser
    firestore: FirestoreAsUser  # REST with the user's token: firestore.rules apply
    uploads: UploadStore
    local: bool
    _listener_credentials: Credentials | None = field(default=None, repr=False)

    @cached_property
    def listener_db(self) -> FirestoreClient:
        """The client whose snapshot listeners follow jobs live.

        Against the emulator this client always acts as admin (it sends `Bearer owner`), so the
        rules do not restrict what it may read: callers listen only to job ids the user's own
        REST requests returned. In production it carries the user's ID token and the rules apply.
        """
        return FirestoreClient(
            project=self.settings.project_id,
            credentials=self._listener_credentials,
        )


def _emulator_env(settings: StackSettings) -> dict[str, str]:
    from greetings.stack.manager import Stack

    wanted = Stack(settings).client_env()
    # Variables already set (the tests, a developer's shell) win over the defaults.
    for key in (
        "FIRESTORE_EMULATOR_HOST",
        "FIREBASE_AUTH_EMULATOR_HOST",
        "STORAGE_EMULATOR_HOST",
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
    ):
        os.environ.setdefault(key, wanted[key])
    return {key: os.environ[key] for key in wanted if key in os.environ}


def _answers(address: str) -> bool:
    host, _, port = address.removeprefix("http://").removeprefix("https://").partition(":")
    try:
        with socket.create_connection((host, int(port.split("/")[0] or 80)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def connect(settings: StackSettings, user_email: str | None) -> Session:
    """Signs in and builds the user's clients, locally or in production (see the module doc)."""
    token = settings.id_token
    if token is not None:
        return _connect_production(settings, token.get_secret_value(), user_email)
    return _connect_local(settings, user_email or LOCAL_USER)


def _connect_local(settings: StackSettings, email: str) -> Session:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client as StorageClient

    env = _emulator_env(settings)
    for what, key in (
        ("the Auth emulator", "FIREBASE_AUTH_EMULATOR_HOST"),
        ("the Firestore emulator", "FIRESTORE_EMULATOR_HOST"),
        ("the Storage emulator", "STORAGE_EMULATOR_HOST"),
    ):
        if not _answers(env[key]):
            raise StackNotRunning(what, env[key])
    try:
        user = sign_in_with_password(
            identity_toolkit_url(env["FIREBASE_AUTH_EMULATOR_HOST"]),
            email,
            LOCAL_PASSWORD,
            create=True,
        )
    except SignInError as exc:
        raise CliError(f"cannot sign in as {email} on the Auth emulator: {exc}") from exc
    anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
    bucket = StorageClient(project=settings.project_id, credentials=anonymous).bucket(
        settings.default_bucket
    )
    return Session(
        settings=settings,
        user=user,
        firestore=FirestoreAsUser(
            f"http://{env['FIRESTORE_EMULATOR_HOST']}/v1", settings.project_id, user.id_token
        ),
        uploads=EmulatorUploads(bucket),
        local=True,
        _listener_credentials=anonymous,
    )


def _connect_production(settings: StackSettings, id_token: str, user_email: str | None) -> Session:
    from google.oauth2.credentials import Credentials as OAuthCredentials

    if user_email is not None:
        raise UsageError("--user is for the local stack; GREETINGS_ID_TOKEN says who you are")
    try:
        uid = uid_from_id_token(id_token)
    except SignInError as exc:
        raise UsageError(f"GREETINGS_ID_TOKEN: {exc}") from exc
    return Session(
        settings=settings,
        user=SignedInUser(uid=uid, id_token=id_token),
        firestore=FirestoreAsUser(settings.firestore_url, settings.project_id, id_token),
        uploads=FirebaseStorageUploads(
            settings.firebase_storage_url, settings.default_bucket, id_token
        ),
        local=False,
        # Firestore accepts a Firebase ID token as the bearer token and applies the rules to it.
        _listener_credentials=OAuthCredentials(token=id_token),  # type: ignore[no-untyped-call]
    )
