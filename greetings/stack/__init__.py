"""The local stack: emulators, Storage and its proxy, the Prefect server and worker."""
