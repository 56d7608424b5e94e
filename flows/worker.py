"""A Prefect worker that runs greeting flow runs inside its own process, on a thread pool.

Prefect's `process` worker starts a new Python process per flow run: `import prefect` alone costs
about 2 s of CPU here, and the whole start-up took 6-20 s from a job's creation to its first stage
(measured, see README). A greeting's real work is about a second (probe, speech, a head-only
render, an upload) and mostly runs in ffmpeg and network waits, so one long-lived process that has
imported everything once, built its clients once, and runs each flow run on a thread starts work
within a poll interval and runs many jobs side by side.

It is a real Prefect worker: it registers with its work pool, heartbeats, is shown in the UI, and
takes flow runs through Prefect's own state machine (a run is claimed by one worker only). What it
cannot do is kill a single run's thread; cancelling is cooperative instead (the flow stops at its
next stage transition when the job is cancelled; see flows/transitions.py).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import MutableMapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import yaml
from prefect import Flow
from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.flow_engine import run_flow
from prefect.workers.base import BaseJobConfiguration, BaseWorker, BaseWorkerResult

from flows.media import sandboxing
from flows.settings import get_settings
from flows.workdir import remove_orphans, work_root

WORKER_TYPE = "greetings-in-process"
DEFAULT_THREADS = 16  # flows/settings.py worker_threads


class InProcessJobConfiguration(BaseJobConfiguration):
    """Nothing to configure per run: runs share the worker's process and environment."""


class InProcessWorkerResult(BaseWorkerResult):
    pass


def module_entrypoint(entrypoint: str) -> tuple[str, str]:
    """`flows/pipeline.py:greeting_pipeline` -> (`flows.pipeline`, `greeting_pipeline`).

    Importing by module name (not by file path, as Prefect's loader does) means every run shares
    one module, so clients and caches built at first use are reused by later runs.
    """
    path, _, name = entrypoint.partition(":")
    if not name:
        raise ValueError(f"entrypoint {entrypoint!r} names no flow")
    module = path.removesuffix(".py").replace("/", ".").replace("\\", ".").strip(".")
    return module, name


def deployed_entrypoints(prefect_yaml: Path) -> list[str]:
    """The entrypoints a prefect.yaml deploys; none where there is no such file."""
    try:
        config = yaml.safe_load(prefect_yaml.read_text())
    except (OSError, yaml.YAMLError):
        return []
    deployments = config.get("deployments") if isinstance(config, dict) else None
    return sorted(
        {
            deployment["entrypoint"]
            for deployment in deployments or []
            if isinstance(deployment, dict) and isinstance(deployment.get("entrypoint"), str)
        }
    )


@cache
def load_flow(entrypoint: str) -> Flow[..., Any]:
    module_name, attribute = module_entrypoint(entrypoint)
    flow = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(flow, Flow):
        raise TypeError(f"{entrypoint} is not a Prefect flow")
    return flow


class InProcessWorker(BaseWorker[InProcessJobConfiguration, Any, InProcessWorkerResult]):
    type = WORKER_TYPE
    job_configuration = InProcessJobConfiguration
    _description = (
        "Runs flow runs on threads inside the worker process: no process start-up per run."
    )
    _display_name = "Greetings in-process"

    def __init__(self, *args: Any, threads: int = DEFAULT_THREADS, **kwargs: Any) -> None:
        kwargs.setdefault("limit", threads)
        super().__init__(*args, **kwargs)
        self._threads = anyio.CapacityLimiter(threads)
        self._entrypoints: dict[str, str] = {}

    async def _entrypoint(self, flow_run: FlowRun) -> str:
        if flow_run.deployment_id is None:
            raise RuntimeError(f"flow run {flow_run.id} has no deployment")
        key = str(flow_run.deployment_id)
        if key not in self._entrypoints:
            deployment = await self.client.read_deployment(flow_run.deployment_id)
            if not deployment.entrypoint:
                raise RuntimeError(f"deployment {deployment.name} has no entrypoint")
            self._entrypoints[key] = deployment.entrypoint
        return self._entrypoints[key]

    async def preload(self, prefect_yaml: Path = Path("prefect.yaml")) -> list[str]:
        """Imports the flows this worker will run before it claims its first run; their
        entrypoints: those of its pool's deployments, and those of the prefect.yaml beside it
        (a new stack's worker starts before its deployments exist).

        Importing them (the render, PyAV, numpy, the clients) took 1.2-1.4 s of the first run's
        start after a restart or a deploy (the bench's "engine starts it"); a warm worker's runs
        start in 0.1-0.5 s.
        """
        pools = WorkPoolFilter(name=WorkPoolFilterName(any_=[self._work_pool_name]))
        entrypoints = set(deployed_entrypoints(prefect_yaml))
        for deployment in await self.client.read_deployments(work_pool_filter=pools):
            if deployment.entrypoint:
                self._entrypoints[str(deployment.id)] = deployment.entrypoint
                entrypoints.add(deployment.entrypoint)
        for entrypoint in sorted(entrypoints):
            await anyio.to_thread.run_sync(load_flow, entrypoint)
        return sorted(entrypoints)

    async def run(
        self,
        flow_run: FlowRun,
        configuration: InProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> InProcessWorkerResult:
        flow = load_flow(await self._entrypoint(flow_run))
        if task_status is not None:
            task_status.started(os.getpid())
        # The engine proposes Running and the final state itself, as in a flow-run process.
        await anyio.to_thread.run_sync(
            partial(run_flow, flow, flow_run=flow_run, return_type="state"),
            limiter=self._threads,
        )
        return InProcessWorkerResult(identifier=f"{os.getpid()}:{flow_run.id}", status_code=0)


def keep_preload_to_this_process(environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Takes jemalloc out of what the worker's children inherit; returns what was preloaded.

    The worker is started with jemalloc preloaded (the local stack, the Kubernetes Deployment):
    it keeps this long-lived process's memory from growing run after run. Its children (ffmpeg,
    ffprobe, espeak-ng) live a second each and are measured on glibc's malloc, so they keep it.
    """
    preload = environ.get("LD_PRELOAD")
    if preload and "jemalloc" in preload:
        del environ["LD_PRELOAD"]
        return preload
    return None


def serve(pool: str, name: str, threads: int = DEFAULT_THREADS) -> None:
    """Runs the worker until interrupted (what `greetings worker` calls)."""
    keep_preload_to_this_process()

    # Said once at start-up, and GREETINGS_SANDBOX=bwrap on a machine that cannot stops here,
    # not at each job's first stage.
    sandboxing(get_settings().sandbox)
    removed = remove_orphans(work_root(get_settings().state_dir))
    if removed:
        print(f"removed {len(removed)} scratch folder(s) left by a killed worker")

    async def main() -> None:
        async with InProcessWorker(work_pool_name=pool, name=name, threads=threads) as worker:
            try:
                loaded = ", ".join(await worker.preload()) or "none found"
                print(f"flows loaded before the first run: {loaded}")
            except Exception as exc:  # each run then loads its own flow, as before
                print(f"flows not preloaded ({type(exc).__name__}: {exc}): loaded at first run")
            await worker.start(printer=print)

    asyncio.run(main())


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the in-process greetings worker.")
    parser.add_argument("--pool", required=True, help="work pool to poll")
    parser.add_argument("--name", default="greetings-worker", help="worker name")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="runs at once")
    args = parser.parse_args()
    serve(args.pool, args.name, args.threads)
