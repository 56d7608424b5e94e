"""The long-running worker's Kubernetes Deployment asks for nothing the worker does not read."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

import yaml

from flows.lifecycle import result_path, upload_prefix
from flows.settings import Settings
from flows.worker import DEFAULT_THREADS
from tests.support.image import ROOT, documented_variables

MANIFEST = ROOT / "deployments" / "kubernetes-worker-deployment.yaml"


def container() -> dict[str, Any]:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["kind"] == "Deployment"
    [worker] = manifest["spec"]["template"]["spec"]["containers"]
    return dict(worker)


def test_it_runs_the_in_process_worker_with_the_documented_environment() -> None:
    worker = container()
    command = worker["command"]
    assert command[:3] == ["python", "-m", "flows.worker"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(command[3:])
    assert args.threads == DEFAULT_THREADS == Settings().worker_threads
    names = [entry["name"] for entry in worker["env"]]
    assert set(names) <= set(documented_variables()), "undocumented variables"
    env = {entry["name"]: entry for entry in worker["env"]}
    assert env["GREETINGS_WORK_POOL"]["value"] == args.pool
    # Keys come from Secrets, never as plain values in the manifest.
    for secret in ("GREETINGS_ELEVENLABS_API_KEY", "PREFECT_API_KEY"):
        assert "value" not in env[secret] and env[secret]["valueFrom"]["secretKeyRef"]


def test_it_asks_for_what_a_worker_and_its_media_processes_need() -> None:
    resources = container()["resources"]
    assert resources["limits"]["memory"] == "2Gi"
    # Each media process is capped at 1 GiB of address space; the worker's Python ~300 MB.
    assert Settings().media_memory_mb <= 1024


def test_the_bucket_lifecycle_deletes_uploads_and_results_as_readme_says() -> None:
    rules = json.loads((ROOT / "deployments" / "storage-lifecycle.json").read_text())["rule"]
    days = {
        prefix: rule["condition"]["age"]
        for rule in rules
        if rule["action"] == {"type": "Delete"}
        for prefix in rule["condition"]["matchesPrefix"]
    }
    # The prefixes are the folders the worker and the trigger really write.
    uploads = upload_prefix("u").split("/")[0] + "/"
    results = result_path("u", "j").split("/")[0] + "/"
    assert set(days) == {uploads, results}
    readme = (ROOT / "README.md").read_text()
    said = re.search(
        r"uploads\s+\(`user-uploads/`\) (\d+) days and results\s+"
        r"\(`greeting-results/`\) (\d+) days",
        readme,
    )
    assert said is not None
    assert (int(said[1]), int(said[2])) == (days[uploads], days[results])
    assert "--lifecycle-file=deployments/storage-lifecycle.json" in readme


def test_it_preloads_the_jemalloc_the_image_links() -> None:
    env = {entry["name"]: entry for entry in container()["env"]}
    preload = env["LD_PRELOAD"]["value"]
    dockerfile = (ROOT / "deployments" / "Dockerfile").read_text()
    # The image installs Debian's libjemalloc2 and links it where the manifest preloads it, the
    # same path on amd64 and arm64.
    assert "libjemalloc2" in dockerfile
    assert re.search(r"ln -s \S*dpkg -L libjemalloc2[^)]*\)\S* " + re.escape(preload), dockerfile)
