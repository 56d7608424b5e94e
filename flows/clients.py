"""Builds the clients that reach the outside world, once per worker; everything else takes them.

Firestore, Storage and the voices (with the speech-cached synthesis task and the voice cloner)
are made at start-up, as arq's `startup(ctx)` builds a job queue's context: a flow takes
`worker_clients()` once at its top and hands the parts on; stages and tasks never build a client
themselves.

Against the local stack (FIRESTORE_EMULATOR_HOST / STORAGE_EMULATOR_HOST set) the clients use
anonymous credentials: the emulators need none, and asking Google for default credentials fails.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import firebase_admin
from firebase_admin import firestore as admin_firestore
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import firestore, storage

from flows.media import UserSlots
from flows.settings import Settings, get_settings
from flows.stages.clone import FirestoreCloneStore, build_cloner
from flows.stages.synthesize import Voices, build_voices, elevenlabs_client

APP_NAME = "greetings-worker"


class _AnonymousCredential(firebase_admin.credentials.Base):  # type: ignore[misc]
    def get_credential(self) -> Credentials:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]


def emulated() -> bool:
    return bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))


def _app(settings: Settings) -> firebase_admin.App:
    try:
        return firebase_admin.get_app(APP_NAME)
    except ValueError:
        credential = _AnonymousCredential() if emulated() else None
        return firebase_admin.initialize_app(
            credential,
            {"projectId": settings.project_id, "storageBucket": settings.default_bucket},
            name=APP_NAME,
        )


@dataclass(frozen=True)
class Clients:
    settings: Settings
    db: firestore.Client
    bucket: storage.Bucket
    voices: Voices
    user_slots: UserSlots  # how many media processes each user runs at once


def build_clients(settings: Settings) -> Clients:
    app = _app(settings)
    db: firestore.Client = admin_firestore.client(app)
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        storage_client = storage.Client(
            project=settings.project_id,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    else:
        storage_client = storage.Client(project=settings.project_id)
    bucket = storage_client.bucket(settings.default_bucket)
    # One ElevenLabs client (None without a key) for speech and for cloning the rep's voice,
    # whose clones are recorded in Firestore (voiceClones/).
    elevenlabs = elevenlabs_client(settings)
    cloner = build_cloner(elevenlabs, FirestoreCloneStore(db), settings)
    voices = build_voices(settings, elevenlabs, cloner)
    return Clients(settings, db, bucket, voices, UserSlots(settings.media_slots_per_user))


@cache
def worker_clients() -> Clients:
    """The process-wide clients of a worker: built on first use, reused by every run."""
    return build_clients(get_settings())
