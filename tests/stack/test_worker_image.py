"""The worker image starts: a real flow run from the image's files alone completes a job.

tests/support/image.py assembles deployments/Dockerfile's files and installs them as the image
does. The flow run is executed the way a Cloud Run or Kubernetes job pool runs it (`prefect
flow-run execute`, with the deployment's pull step from prefect.yaml), in that folder, with
only the variables deployments/README.md lists, plus the emulators' addresses where production
has Google's (and no `.env`, no firebase.json, no dev dependencies).
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flows.job import COLLECTION, JobRequest, result_path
from tests.conftest import Uploaded
from tests.support.image import ROOT, Image, assemble, documented_variables
from tests.support.stackkit import (
    read_job,
    request_fields,
    statuses,
    trigger_prefect,
    wait_finished,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(600)]

IMAGE_POOL = "greetings-image-test"  # no worker polls it: the test executes the run itself
DEPLOYMENT = "image-test"
EXECUTE_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return assemble(tmp_path_factory.mktemp("worker-image") / "opt-greetings")


def production_env(stack: Any, image: Image) -> dict[str, str]:
    """What a production worker's container gets, pointed at the local stack."""
    documented = set(documented_variables())
    assert {"PREFECT_API_URL", "GREETINGS_PROJECT_ID", "GREETINGS_BUCKET"} <= documented
    values = {
        "PREFECT_API_URL": stack.s.prefect_api,
        "GREETINGS_PROJECT_ID": stack.s.project_id,
        "GREETINGS_BUCKET": stack.s.default_bucket,
    }
    home = image.root.parent / "home"
    home.mkdir(exist_ok=True)
    return {
        **image.env,
        **{name: value for name, value in values.items() if name in documented},
        "PATH": f"{image.env.get('PATH', '')}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        # Google's endpoints, played by the stack's emulators.
        "FIRESTORE_EMULATOR_HOST": stack.s.firestore_emulator_host,
        "STORAGE_EMULATOR_HOST": stack.s.storage_emulator_host,
    }


def image_deployment(stack: Any) -> str:
    """greeting-pipeline deployed to a pool nobody polls, with prefect.yaml's pull step."""
    # The trigger's client: it repeats what Prefect answers 503 to (its database busy, as it
    # is late in a full suite) the way the trigger does in production.
    api = trigger_prefect(stack)
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    [pipeline] = [d for d in config["deployments"] if d["name"] == "greeting-pipeline"]
    try:
        api.call("POST", "/work_pools/", {"name": IMAGE_POOL, "type": "process"})
    except requests.HTTPError as exc:
        assert exc.response is not None and exc.response.status_code == 409, exc  # made before
    flow = api.call("POST", "/flows/", {"name": "greeting-pipeline"})
    deployment = api.call(
        "POST",
        "/deployments/",
        {
            "name": DEPLOYMENT,
            "flow_id": flow["id"],
            "entrypoint": pipeline["entrypoint"],
            "work_pool_name": IMAGE_POOL,
            "pull_steps": config["pull"],
        },
    )
    return str(deployment["id"])


def test_the_image_holds_the_worker_and_not_the_command(image: Image) -> None:
    assert (image.root / "flows" / "pipeline.py").is_file()
    assert not (image.root / "greetings").exists()
    assert not (image.root / "firebase.json").exists()
    assert not (image.root / "tests").exists()
    installed = subprocess.run(
        [str(image.python), "-c", "import pytest"], capture_output=True, check=False
    )
    assert installed.returncode != 0, "dev dependencies were installed into the image"


def test_a_flow_run_from_the_image_completes_a_job(
    stack: Any, clients: Any, make_user: Any, uploaded: Uploaded, image: Image
) -> None:
    user, video = uploaded.user, uploaded.path
    fields = request_fields(user, video, prospect_name="Ada")
    job_id = f"image-{os.urandom(6).hex()}"
    # Queued by hand (the trigger ignores it): this run, not the stack's worker, must do it.
    # Queued now: without updatedAt the stack's sweep would take it for a job stuck in the
    # queue since forever and reap it (worker-lost) while this run's process starts.
    document = {
        **JobRequest(**fields).to_firestore(),
        "status": "queued",
        "retryCount": 0,
        "updatedAt": datetime.now(UTC),
    }
    clients.db.collection(COLLECTION).document(job_id).create(document)
    run = trigger_prefect(stack).call(
        "POST",
        f"/deployments/{image_deployment(stack)}/create_flow_run",
        {"parameters": {"job_id": job_id, "attempt": 0}, "name": f"image-{job_id}"},
    )

    done = subprocess.run(
        [str(image.root / ".venv" / "bin" / "prefect"), "flow-run", "execute", run["id"]],
        cwd=image.root.parent,  # the pull step, not the caller, must find the code
        env=production_env(stack, image),
        capture_output=True,
        text=True,
        timeout=EXECUTE_TIMEOUT_S,
        check=False,
    )
    job = wait_finished(clients, job_id, 30)
    assert job["status"] == "completed", (
        job.get("error"),
        done.stdout[-3000:],
        done.stderr[-3000:],
    )
    assert statuses(job)[-5:] == [
        "validating-input",
        "processing-audio",
        "generating-video",
        "uploading-result",
        "completed",
    ]
    assert job["flowRunId"] == run["id"]
    assert clients.bucket.blob(result_path(user.uid, job_id)).exists()
    assert read_job(clients, job_id)["outputPath"] == result_path(user.uid, job_id)


def test_the_image_test_notices_a_file_the_worker_needs_but_the_image_lacks(
    tmp_path: Path,
) -> None:
    # The Dockerfile without its `COPY flows`: the worker's entrypoints cannot be imported, so
    # a file the worker reads that the Dockerfile leaves out fails this proof, as in the image.
    dockerfile = (ROOT / "deployments" / "Dockerfile").read_text()
    without = "\n".join(
        line for line in dockerfile.splitlines() if not line.startswith("COPY flows")
    )
    assert without != dockerfile
    image = assemble(tmp_path / "opt-greetings", without)
    imported = subprocess.run(
        [str(image.python), "-c", "import flows.pipeline"],
        cwd=image.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode != 0
    assert "No module named 'flows" in imported.stderr
