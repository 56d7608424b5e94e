"""The in-process worker's plain parts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.pipeline import greeting_pipeline
from flows.sweep import retry_failed_jobs
from flows.workdir import remove_orphans, run_dir
from flows.worker import (
    deployed_entrypoints,
    keep_preload_to_this_process,
    load_flow,
    module_entrypoint,
)
from greetings.settings import REPO_ROOT
from greetings.stack.manager import jemalloc_preload, preloads_jemalloc


def test_entrypoints_map_to_modules() -> None:
    assert module_entrypoint("flows/pipeline.py:greeting_pipeline") == (
        "flows.pipeline",
        "greeting_pipeline",
    )
    with pytest.raises(ValueError):
        module_entrypoint("flows/pipeline.py")


def test_prefect_yaml_entrypoints_load_the_shared_flow_objects() -> None:
    # The same objects the rest of the process imports: clients and caches are shared.
    assert load_flow("flows/pipeline.py:greeting_pipeline") is greeting_pipeline
    assert load_flow("flows/sweep.py:retry_failed_jobs") is retry_failed_jobs
    with pytest.raises(TypeError):
        load_flow("flows/settings.py:get_settings")


def test_the_worker_preloads_what_prefect_yaml_deploys(tmp_path: Path) -> None:
    entrypoints = deployed_entrypoints(REPO_ROOT / "prefect.yaml")
    assert "flows/pipeline.py:greeting_pipeline" in entrypoints
    assert "flows/batch.py:greeting_batch" in entrypoints
    for entrypoint in entrypoints:
        load_flow(entrypoint)  # each names a flow
    # No file, or one that lists nothing usable: nothing to preload, and no error.
    assert deployed_entrypoints(tmp_path / "missing.yaml") == []
    odd = tmp_path / "prefect.yaml"
    odd.write_text("deployments:\n  - name: x\n  - entrypoint: 3\n")
    assert deployed_entrypoints(odd) == []
    odd.write_text(": not yaml [")
    assert deployed_entrypoints(odd) == []


def test_orphaned_scratch_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f"{dead.pid}-job1-abc"
    orphan.mkdir()
    (orphan / "input").write_bytes(b"x" * 10)
    with run_dir(tmp_path, "job2") as mine:
        removed = remove_orphans(tmp_path)
        assert removed == [orphan]
        assert Path(mine).is_dir()  # a live process's folder stays
    assert list(tmp_path.iterdir()) == []  # and goes when its run ends


def test_jemalloc_stays_with_the_worker_and_not_its_media_processes() -> None:
    environ = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "PATH": "/usr/bin"}
    assert keep_preload_to_this_process(environ) == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    assert environ == {"PATH": "/usr/bin"}
    # Somebody else's preload (a profiler, a debugging shim) is theirs to keep.
    other = {"LD_PRELOAD": "/usr/lib/libfaketime.so.1"}
    assert keep_preload_to_this_process(other) is None
    assert other == {"LD_PRELOAD": "/usr/lib/libfaketime.so.1"}
    assert keep_preload_to_this_process({}) is None


def test_the_stack_preloads_jemalloc_only_where_the_machine_has_it(tmp_path: Path) -> None:
    empty, found = tmp_path / "empty", tmp_path / "lib"
    empty.mkdir()
    found.mkdir()
    (found / "libjemalloc.so.2").write_bytes(b"\x7fELF")
    assert jemalloc_preload((str(empty),)) == {}
    assert jemalloc_preload((str(empty), str(found))) == {
        "LD_PRELOAD": str(found / "libjemalloc.so.2")
    }


def test_a_compared_commit_gets_jemalloc_only_if_its_own_stack_preloaded_it(
    tmp_path: Path,
) -> None:
    # `greetings bench --compare REF` runs REF's worker as REF's own stack would have.
    assert preloads_jemalloc(REPO_ROOT)
    older = tmp_path / "greetings" / "stack"
    older.mkdir(parents=True)
    (older / "manager.py").write_text('WORKER_NAME = "greetings-local-worker"\n')
    assert not preloads_jemalloc(tmp_path)
    assert not preloads_jemalloc(tmp_path / "missing")
