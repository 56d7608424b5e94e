"""The work pools' base job templates (deployments/*.json), rendered by the workers' own code.

For a flow run of prefect.yaml's `greeting-pipeline` deployment, each test builds what a worker
would submit, with the libraries' real code and nothing of Google's or a cluster's:

- the template is checked as the Prefect server checks it on `prefect work-pool create` and on
  `prefect deploy` (its placeholders are declared, its defaults fit their schema);
- the job configuration comes from `resolve_for_flow_run`, the call a worker makes for each run
  (template, defaults and job variables merged, then `prepare_for_flow_run`); the only Prefect
  API call it makes, `read_flow`, is answered from memory;
- the result goes through the library's own submit call: prefect-gcp's `JobV2.create` on a
  Cloud Run client built from the static discovery document over googleapiclient's
  `HttpMockSequence`, prefect-kubernetes' `KubernetesWorker._create_job` with kubernetes_asyncio's
  REST client over a recording session instead of aiohttp's. The tests read the body posted.

The worker's own Prefect settings (its API URL and key) are set as a production worker's would
be: a worker hands them to every job. Each check also runs against broken copies of a template
(tmp_path), which it must refuse.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from googleapiclient import discovery
from googleapiclient.http import HttpMockSequence
from kubernetes_asyncio.client import ApiClient, Configuration
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.flows import load_flow_arguments_from_entrypoint
from prefect.server.api.validation import (
    validate_job_variable_defaults_for_work_pool,
    validate_job_variables_for_deployment,
)
from prefect.server.schemas import actions as server_actions
from prefect.server.schemas import core as server_core
from prefect.settings import (
    PREFECT_API_KEY,
    PREFECT_API_URL,
    PREFECT_LOGGING_TO_API_ENABLED,
    temporary_settings,
)
from prefect.workers.base import BaseJobConfiguration, BaseWorker
from prefect_gcp.models.cloud_run_v2 import JobV2
from prefect_gcp.workers.cloud_run_v2 import CloudRunWorkerJobV2Configuration, CloudRunWorkerV2
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

from tests.support.image import DOCKERFILE, ROOT, documented_variables, env_pairs, instructions

CLOUD_RUN_TEMPLATE = ROOT / "deployments" / "cloud-run-v2-job-template.json"
KUBERNETES_TEMPLATE = ROOT / "deployments" / "kubernetes-job-template.json"
DEPLOYMENT = "greeting-pipeline"

WORKER_API_URL = "https://api.prefect.cloud/api/accounts/acc-1/workspaces/ws-1"
WORKER_API_KEY = "pnu_the-workers-key-never-in-a-job-body"
RELEASE_IMAGE = "us-central1-docker.pkg.dev/greetings-test/greetings/worker:abc1234"
GCP_PROJECT = "greetings-test"
KUBERNETES_HOST = "https://kubernetes.invalid"

EXECUTE = ["prefect", "flow-run", "execute"]  # what BaseJobConfiguration runs in a job
CPU, MEMORY, TIMEOUT_S = "2", "2Gi", 900
ELEVENLABS_KEY = "GREETINGS_ELEVENLABS_API_KEY"
# The secrets the pools read the ElevenLabs key from (deployments/README.md names them).
ELEVENLABS_SECRET_MANAGER = {"secret": "greetings-elevenlabs-api-key", "version": "latest"}
ELEVENLABS_KUBERNETES_SECRET = {"name": "greetings-elevenlabs", "key": "api-key"}
# Where the Prefect Cloud key is, per pool kind: the Cloud Run pool's `prefect_api_key_secret`,
# the Kubernetes worker's PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_* settings.
PREFECT_KEY_SECRET_MANAGER = {"secret": "prefect-api-key", "version": "latest"}
PREFECT_KEY_KUBERNETES_SECRET = {"name": "greetings-prefect", "key": "api-key"}
SIGTERM_BEHAVIOR = "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"

# How each variable of deployments/README.md's "The worker's environment" reaches a job.
#   worker: the worker's own Prefect setting, which it passes to every job;
#   secret: a secret reference in the job body, never a value;
#   pool: a default of the template's `env` (to be edited, like `image`);
#   optional: the pool's or deployment's `env` when wanted (flows/settings.py has a default);
#   image: an ENV line of deployments/Dockerfile;
#   worker-only: read by the in-process worker, not by a job.
DOCUMENTED = {
    "PREFECT_API_URL": "worker",
    "PREFECT_API_KEY": "secret",
    "GREETINGS_PROJECT_ID": "pool",
    "GREETINGS_BUCKET": "optional",
    ELEVENLABS_KEY: "secret",
    "GREETINGS_ELEVENLABS_CONCURRENCY": "optional",
    "GREETINGS_SPEECH_CACHE": "optional",
    "GREETINGS_WORK_POOL": "worker-only",
    "LD_PRELOAD": "worker-only",
    "GREETINGS_CODE_DIR": "image",
}
# What an operator may add to the pool's `env` (README): it must arrive next to the defaults.
OPTIONAL_ENV = {
    "GREETINGS_BUCKET": "greetings-test-uploads",
    "GREETINGS_ELEVENLABS_CONCURRENCY": "3",
    "GREETINGS_SPEECH_CACHE": "gs://greetings-test-uploads/speech-cache",
}


# --- the worker's environment ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def worker_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a production worker has: Prefect Cloud settings and Google's default credentials.

    The credentials are an `authorized_user` file, which google.auth loads without a network
    (prefect-gcp's GcpCredentials asks google.auth for them when the pool names none).
    Logging to the API is off so that no log record leaves this process.
    """
    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "test.apps.googleusercontent.com",
                "client_secret": "test",
                "refresh_token": "test",
                "quota_project_id": GCP_PROJECT,
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", GCP_PROJECT)
    monkeypatch.setenv(
        "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME",
        PREFECT_KEY_KUBERNETES_SECRET["name"],
    )
    monkeypatch.setenv(
        "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY",
        PREFECT_KEY_KUBERNETES_SECRET["key"],
    )
    with temporary_settings(
        {
            PREFECT_API_URL: WORKER_API_URL,
            PREFECT_API_KEY: WORKER_API_KEY,
            PREFECT_LOGGING_TO_API_ENABLED: False,
        }
    ):
        yield


# --- the deployment and its flow run, as the Prefect API would hand them to a worker ---------


class Run:
    """prefect.yaml's deployment, its flow and one flow run of it, as API objects.

    `extra_job_variables` join the deployment's: what an operator sets on the pool or the
    deployment (the release's image, the Prefect key's secret, more `env`).
    """

    def __init__(self, pool: str, extra_job_variables: dict[str, Any]) -> None:
        spec = next(
            d
            for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
            if d["name"] == DEPLOYMENT
        )
        path, function = spec["entrypoint"].split(":")
        # The flow's name as `prefect deploy` reads it: from the decorator, without importing.
        flow_name = load_flow_arguments_from_entrypoint(f"{ROOT / path}:{function}")["name"]
        self.flow = Flow(id=uuid.uuid4(), name=flow_name)
        self.job_variables = {**spec["work_pool"].get("job_variables", {}), **extra_job_variables}
        self.deployment = DeploymentResponse(
            id=uuid.uuid4(),
            name=spec["name"],
            flow_id=self.flow.id,
            entrypoint=spec["entrypoint"],
            work_pool_name=pool,
            job_variables=self.job_variables,
        )
        # As flows/orchestration.py's create_job_run makes it: parameters, no job variables.
        self.flow_run = FlowRun(
            id=uuid.uuid4(),
            name="job-abc123-attempt-0",
            flow_id=self.flow.id,
            deployment_id=self.deployment.id,
            parameters={"job_id": "abc123", "attempt": 0},
            work_pool_name=pool,
        )

    async def read_flow(self, flow_id: uuid.UUID) -> Flow:
        """The Prefect API call `resolve_for_flow_run` makes (a block or variable reference in
        a template would make others, which this stand-in does not have)."""
        assert flow_id == self.flow.id
        return self.flow


async def configure(
    worker: type[BaseWorker[Any, Any, Any]],
    template_path: Path,
    run: Run,
    pool: str,
) -> Any:
    """The job configuration a worker of `pool` builds for `run`, after the server's checks."""
    template = json.loads(template_path.read_text())
    # `prefect work-pool create --base-job-template ...`: the server's checks.
    server_actions.WorkPoolCreate(name=pool, type=worker.type, base_job_template=template)
    await validate_job_variable_defaults_for_work_pool(None, pool, template)  # type: ignore[arg-type]
    # `prefect deploy`: the deployment's job variables against the pool's schema.
    await validate_job_variables_for_deployment(
        None,  # type: ignore[arg-type]
        server_core.WorkPool(name=pool, type=worker.type, base_job_template=template),
        server_actions.DeploymentCreate(
            name=run.deployment.name, flow_id=run.flow.id, job_variables=run.job_variables
        ),
    )
    job_configuration: type[BaseJobConfiguration] = worker.job_configuration
    return await job_configuration.resolve_for_flow_run(
        run.flow_run,
        client=run,  # type: ignore[arg-type]
        work_pool=WorkPool(
            id=uuid.uuid4(), name=pool, type=worker.type, base_job_template=template
        ),
        worker_name=f"{pool}-worker",
        worker_id=uuid.uuid4(),
        deployment=run.deployment,
    )


# --- Cloud Run -------------------------------------------------------------------------------


def cloud_run_job(
    template_path: Path = CLOUD_RUN_TEMPLATE, **job_variables: Any
) -> tuple[Run, dict[str, Any]]:
    """The flow run and the Cloud Run job body the worker POSTs for it."""
    pool = "greetings-cloud-run"
    run = Run(pool, job_variables)
    configuration: CloudRunWorkerJobV2Configuration = asyncio.run(
        configure(CloudRunWorkerV2, template_path, run, pool)
    )
    http = HttpMockSequence([({"status": "200"}, json.dumps({"name": "operations/create"}))])
    client = discovery.build("run", "v2", http=http, static_discovery=True)
    # What CloudRunWorkerV2._create_job_and_wait_for_registration calls.
    JobV2.create(
        cr_client=client.projects().locations(),
        project=configuration.project,
        location=configuration.region,
        job_id=configuration.job_name,
        body=configuration.job_body,
    )
    [(uri, method, body, _headers)] = http.request_sequence
    assert method == "POST"
    assert uri.startswith(
        f"https://run.googleapis.com/v2/projects/{GCP_PROJECT}/locations/us-central1/jobs"
        f"?jobId={configuration.job_name}"
    )
    return run, json.loads(body)


def check_cloud_run_job(run: Run, body: dict[str, Any], image: str) -> None:
    """What a production Cloud Run job must be; AssertionError says what is not."""
    task = body["template"]["template"]
    [container] = task["containers"]
    assert container.get("image") == image
    assert container.get("command") == EXECUTE
    assert not container.get("args")
    assert container.get("resources") == {"limits": {"cpu": CPU, "memory": MEMORY}}
    assert task.get("timeout") == f"{TIMEOUT_S}s"
    assert task.get("maxRetries") == 0, "Cloud Run must not retry: the sweep retries jobs"
    env = named(container["env"])
    assert entry(env, "PREFECT__FLOW_RUN_ID") == {
        "name": "PREFECT__FLOW_RUN_ID",
        "value": str(run.flow_run.id),
    }
    assert entry(env, "PREFECT_API_URL")["value"] == WORKER_API_URL
    assert entry(env, "PREFECT_API_KEY") == {
        "name": "PREFECT_API_KEY",
        "valueSource": {"secretKeyRef": PREFECT_KEY_SECRET_MANAGER},
    }
    assert entry(env, ELEVENLABS_KEY) == {
        "name": ELEVENLABS_KEY,
        "valueSource": {"secretKeyRef": ELEVENLABS_SECRET_MANAGER},
    }
    assert entry(env, "GREETINGS_PROJECT_ID")["value"]
    # Cloud Run's SIGTERM (timeout) crashes the run, which the sweep then handles.
    assert env.get(SIGTERM_BEHAVIOR, {}).get("value") in (None, "crash")
    assert WORKER_API_KEY not in json.dumps(body)


PRODUCTION_CLOUD_RUN = {
    "image": RELEASE_IMAGE,
    "prefect_api_key_secret": PREFECT_KEY_SECRET_MANAGER,
}


def test_cloud_run_job_for_a_pipeline_run() -> None:
    run, body = cloud_run_job(**PRODUCTION_CLOUD_RUN)
    check_cloud_run_job(run, body, RELEASE_IMAGE)
    assert body["client"] == "prefect"
    assert body["labels"]["prefect-io-flow-run-id"] == str(run.flow_run.id)
    assert body["labels"]["prefect-io-deployment-name"] == DEPLOYMENT


def test_cloud_run_job_uses_the_templates_image_by_default() -> None:
    default = variable_default(CLOUD_RUN_TEMPLATE, "image")
    assert default.endswith("/greetings/worker:latest")
    run, body = cloud_run_job(prefect_api_key_secret=PREFECT_KEY_SECRET_MANAGER)
    check_cloud_run_job(run, body, default)


def test_cloud_run_job_gets_the_documented_variables() -> None:
    run, body = cloud_run_job(**PRODUCTION_CLOUD_RUN, env=OPTIONAL_ENV)
    [container] = body["template"]["template"]["containers"]
    check_documented_variables(named(container["env"]), secret_key="valueSource")
    check_cloud_run_job(run, body, RELEASE_IMAGE)


def _cloud_run_retries(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["max_retries"]["default"] = 3


def _cloud_run_retries_in_body(t: dict[str, Any]) -> None:
    t["job_configuration"]["job_body"]["template"]["template"]["maxRetries"] = 3


def _cloud_run_no_elevenlabs_secret(t: dict[str, Any]) -> None:
    del t["variables"]["properties"]["env_from_secrets"]["default"]


def _cloud_run_elevenlabs_in_plain_text(t: dict[str, Any]) -> None:
    _cloud_run_no_elevenlabs_secret(t)
    t["variables"]["properties"]["env"]["default"][ELEVENLABS_KEY] = "sk_plain"


def _cloud_run_small_memory(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["memory"]["default"] = "512Mi"


def _cloud_run_one_cpu(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["cpu"]["default"] = "1000m"


def _cloud_run_short_timeout(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["timeout"]["default"] = 600


def _cloud_run_prefect_image(t: dict[str, Any]) -> None:
    container = t["job_configuration"]["job_body"]["template"]["template"]["containers"][0]
    container["image"] = "prefecthq/prefect:3-latest"


def _cloud_run_own_command(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["command"]["default"] = "python -m flows.pipeline"


@pytest.mark.parametrize(
    "break_template",
    [
        _cloud_run_retries,
        _cloud_run_retries_in_body,
        _cloud_run_no_elevenlabs_secret,
        _cloud_run_elevenlabs_in_plain_text,
        _cloud_run_small_memory,
        _cloud_run_one_cpu,
        _cloud_run_short_timeout,
        _cloud_run_prefect_image,
        _cloud_run_own_command,
    ],
)
def test_cloud_run_check_refuses_a_broken_template(
    tmp_path: Path, break_template: Callable[[dict[str, Any]], None]
) -> None:
    broken = broken_copy(CLOUD_RUN_TEMPLATE, tmp_path, break_template)
    run, body = cloud_run_job(broken, **PRODUCTION_CLOUD_RUN)
    with pytest.raises(AssertionError):
        check_cloud_run_job(run, body, RELEASE_IMAGE)


# --- Kubernetes ------------------------------------------------------------------------------


class RecordingSession:
    """Stands where kubernetes_asyncio's REST client keeps its aiohttp session: records each
    request and answers as the API server does to a Job create (the Job, named)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []

    async def request(self, method: str, url: str, data: str | None = None, **_: Any) -> Any:
        body = json.loads(data) if data else None
        self.requests.append((method, url, body))
        created = copy.deepcopy(body) or {}
        created["metadata"]["name"] = created["metadata"]["generateName"] + "x7k2p"
        return _Response(201, json.dumps(created).encode())

    async def close(self) -> None:
        pass


class _Response:
    reason = "Created"
    headers = {"content-type": "application/json"}  # noqa: RUF012 (read-only)

    def __init__(self, status: int, data: bytes) -> None:
        self.status, self._data = status, data

    async def read(self) -> bytes:
        return self._data


def kubernetes_job(
    template_path: Path = KUBERNETES_TEMPLATE, **job_variables: Any
) -> tuple[Run, dict[str, Any]]:
    """The flow run and the Job manifest the Kubernetes worker POSTs for it."""
    pool = "greetings-kubernetes"
    run = Run(pool, job_variables)

    async def submit() -> list[tuple[str, str, Any]]:
        configuration: KubernetesWorkerJobConfiguration = await configure(
            KubernetesWorker, template_path, run, pool
        )
        client = ApiClient(Configuration(host=KUBERNETES_HOST))
        await client.rest_client.pool_manager.close()
        session = RecordingSession()
        client.rest_client.pool_manager = session
        try:
            worker = KubernetesWorker(work_pool_name=pool, name=f"{pool}-worker")
            job = await worker._create_job(configuration, client)
        finally:
            await client.close()
        assert job.metadata.name.startswith(configuration.job_manifest["metadata"]["generateName"])
        return session.requests

    [(method, url, manifest)] = asyncio.run(submit())
    assert (method, url) == ("POST", f"{KUBERNETES_HOST}/apis/batch/v1/namespaces/default/jobs")
    return run, manifest


def check_kubernetes_job(run: Run, manifest: dict[str, Any], image: str) -> None:
    """What a production Kubernetes Job must be; AssertionError says what is not."""
    spec = manifest["spec"]
    assert spec.get("backoffLimit") == 0, "Kubernetes must not retry: the sweep retries jobs"
    assert spec.get("activeDeadlineSeconds") == TIMEOUT_S
    pod = spec["template"]["spec"]
    assert pod.get("restartPolicy") == "Never"
    [container] = pod["containers"]
    assert container.get("image") == image
    # `args` with no `command`: they replace the image's CMD, which runs as is (no ENTRYPOINT).
    assert container.get("args") == EXECUTE
    assert "command" not in container
    assert not [k for k, _ in instructions(DOCKERFILE.read_text()) if k == "ENTRYPOINT"]
    assert container.get("resources") == {
        "requests": {"cpu": CPU, "memory": MEMORY},
        "limits": {"cpu": CPU, "memory": MEMORY},
    }
    env = named(container["env"])
    assert entry(env, "PREFECT__FLOW_RUN_ID") == {
        "name": "PREFECT__FLOW_RUN_ID",
        "value": str(run.flow_run.id),
    }
    assert entry(env, "PREFECT_API_URL")["value"] == WORKER_API_URL
    assert entry(env, "PREFECT_API_KEY") == {
        "name": "PREFECT_API_KEY",
        "valueFrom": {"secretKeyRef": PREFECT_KEY_KUBERNETES_SECRET},
    }
    assert entry(env, ELEVENLABS_KEY) == {
        "name": ELEVENLABS_KEY,
        "valueFrom": {"secretKeyRef": ELEVENLABS_KUBERNETES_SECRET},
    }
    assert entry(env, "GREETINGS_PROJECT_ID")["value"]
    # With backoffLimit 0 prefect-kubernetes would have SIGTERM (the deadline, an eviction)
    # reschedule the run, which then runs again outside the sweep's count: it must crash.
    assert entry(env, SIGTERM_BEHAVIOR)["value"] == "crash"
    assert WORKER_API_KEY not in json.dumps(manifest)


PRODUCTION_KUBERNETES = {"image": RELEASE_IMAGE}


def test_kubernetes_job_for_a_pipeline_run() -> None:
    run, manifest = kubernetes_job(**PRODUCTION_KUBERNETES)
    check_kubernetes_job(run, manifest, RELEASE_IMAGE)
    assert manifest["kind"] == "Job"
    assert manifest["metadata"]["generateName"] == f"{run.flow_run.name}-"
    assert manifest["metadata"]["labels"]["prefect.io/flow-run-id"] == str(run.flow_run.id)


def test_kubernetes_job_uses_the_templates_image_by_default() -> None:
    default = variable_default(KUBERNETES_TEMPLATE, "image")
    assert default == variable_default(CLOUD_RUN_TEMPLATE, "image")
    run, manifest = kubernetes_job()
    check_kubernetes_job(run, manifest, default)


def test_kubernetes_job_gets_the_documented_variables() -> None:
    run, manifest = kubernetes_job(**PRODUCTION_KUBERNETES, env=OPTIONAL_ENV)
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    check_documented_variables(named(container["env"]), secret_key="valueFrom")
    check_kubernetes_job(run, manifest, RELEASE_IMAGE)


def _kubernetes_container(t: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _kubernetes_retries(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["backoff_limit"]["default"] = 3


def _kubernetes_no_deadline(t: dict[str, Any]) -> None:
    del t["job_configuration"]["job_manifest"]["spec"]["activeDeadlineSeconds"]


def _kubernetes_no_elevenlabs_secret(t: dict[str, Any]) -> None:
    _kubernetes_container(t)["env"] = []


def _kubernetes_library_env(t: dict[str, Any]) -> None:
    _kubernetes_container(t)["env"] = "{{ env }}"


def _kubernetes_elevenlabs_in_plain_text(t: dict[str, Any]) -> None:
    _kubernetes_no_elevenlabs_secret(t)
    t["variables"]["properties"]["env"]["default"][ELEVENLABS_KEY] = "sk_plain"


def _kubernetes_rescheduled_on_sigterm(t: dict[str, Any]) -> None:
    del t["variables"]["properties"]["env"]["default"][SIGTERM_BEHAVIOR]


def _kubernetes_small_memory(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["memory_limit"]["default"] = "512Mi"


def _kubernetes_no_cpu_request(t: dict[str, Any]) -> None:
    t["variables"]["properties"]["cpu_request"]["default"] = None


def _kubernetes_prefect_image(t: dict[str, Any]) -> None:
    _kubernetes_container(t)["image"] = "prefecthq/prefect:3-latest"


@pytest.mark.parametrize(
    "break_template",
    [
        _kubernetes_retries,
        _kubernetes_no_deadline,
        _kubernetes_no_elevenlabs_secret,
        _kubernetes_library_env,
        _kubernetes_elevenlabs_in_plain_text,
        _kubernetes_rescheduled_on_sigterm,
        _kubernetes_small_memory,
        _kubernetes_no_cpu_request,
        _kubernetes_prefect_image,
    ],
)
def test_kubernetes_check_refuses_a_broken_template(
    tmp_path: Path, break_template: Callable[[dict[str, Any]], None]
) -> None:
    broken = broken_copy(KUBERNETES_TEMPLATE, tmp_path, break_template)
    run, manifest = kubernetes_job(broken, **PRODUCTION_KUBERNETES)
    with pytest.raises(AssertionError):
        check_kubernetes_job(run, manifest, RELEASE_IMAGE)


# --- both ------------------------------------------------------------------------------------


@pytest.mark.parametrize("template_path", [CLOUD_RUN_TEMPLATE, KUBERNETES_TEMPLATE])
def test_an_undeclared_variable_is_refused_as_the_server_refuses_it(
    tmp_path: Path, template_path: Path
) -> None:
    def undeclared(t: dict[str, Any]) -> None:
        t["job_configuration"]["name"] = "{{ elevenlabs_secret_name }}"

    broken = broken_copy(template_path, tmp_path, undeclared)
    with pytest.raises(ValueError, match="elevenlabs_secret_name"):
        if template_path == CLOUD_RUN_TEMPLATE:
            cloud_run_job(broken, **PRODUCTION_CLOUD_RUN)
        else:
            kubernetes_job(broken, **PRODUCTION_KUBERNETES)


@pytest.mark.parametrize(
    ("worker", "template_path", "ours"),
    [
        (
            CloudRunWorkerV2,
            CLOUD_RUN_TEMPLATE,
            {"image", "cpu", "memory", "timeout", "env", "env_from_secrets"},
        ),
        (
            KubernetesWorker,
            KUBERNETES_TEMPLATE,
            {"image", "cpu_request", "cpu_limit", "memory_request", "memory_limit", "env"},
        ),
    ],
)
def test_templates_are_the_libraries_defaults_with_ours(
    worker: type[BaseWorker[Any, Any, Any]], template_path: Path, ours: set[str]
) -> None:
    """deployments/README.md says each template is the library's default plus our defaults: a
    library upgrade that changes its default template shows up here."""
    library = worker.get_default_base_job_template()
    template = json.loads(template_path.read_text())
    configuration = copy.deepcopy(template["job_configuration"])
    added: set[str] = set()
    if worker is KubernetesWorker:
        spec = configuration["job_manifest"]["spec"]
        assert spec.pop("activeDeadlineSeconds") == "{{ active_deadline_seconds }}"
        spec["template"]["spec"]["containers"][0]["env"] = "{{ env }}"
        added = {"active_deadline_seconds"}
    assert configuration == library["job_configuration"]
    ours_props, library_props = (
        template["variables"]["properties"],
        library["variables"]["properties"],
    )
    assert set(ours_props) == set(library_props) | added
    changed = {name for name in library_props if ours_props[name] != library_props[name]}
    assert changed == ours
    for name in changed:
        assert {k: v for k, v in ours_props[name].items() if k != "default"} == {
            k: v for k, v in library_props[name].items() if k != "default"
        }, f"{name}: only its default is ours"
    assert template["variables"]["definitions"] == library["variables"]["definitions"]


def test_every_documented_variable_has_a_way_into_a_job() -> None:
    assert set(documented_variables()) == set(DOCUMENTED)


# --- helpers ---------------------------------------------------------------------------------


def named(env: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = [item["name"] for item in env]
    assert len(names) == len(set(names)), f"a variable twice: {names}"
    return {item["name"]: item for item in env}


def entry(env: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    assert name in env, f"{name} is not in the job's environment"
    return env[name]


def check_documented_variables(env: dict[str, dict[str, Any]], secret_key: str) -> None:
    image_env: dict[str, str] = {}
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "ENV":
            image_env.update(env_pairs(arguments))
    for name, source in DOCUMENTED.items():
        if source in ("worker", "pool"):
            assert entry(env, name)["value"], name
        elif source == "secret":
            assert set(entry(env, name)) == {"name", secret_key}, (
                f"{name} must be a secret reference"
            )
        elif source == "optional":
            assert entry(env, name)["value"] == OPTIONAL_ENV[name]
        elif source == "image":
            assert image_env[name] and name not in env
        else:
            assert name not in env


def variable_default(template_path: Path, name: str) -> Any:
    return json.loads(template_path.read_text())["variables"]["properties"][name]["default"]


def broken_copy(
    template_path: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> Path:
    template = json.loads(template_path.read_text())
    edit(template)
    copy_path = tmp_path / template_path.name
    copy_path.write_text(json.dumps(template))
    return copy_path
