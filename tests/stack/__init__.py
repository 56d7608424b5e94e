"""End-to-end tests against the running stack: emulators, Storage, Prefect server and worker."""
