"""The lifecycle rules are one file that both deploys carry: the trigger's is a link to it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import jobs as trigger_jobs
import pytest  # triggers/ is on the path (pyproject: pytest pythonpath)

from flows import lifecycle, orchestration

ROOT = Path(__file__).resolve().parents[2]


SHARED = ["lifecycle.py", "webhook_queue.py"]  # what the worker and the functions both run


@pytest.mark.parametrize("name", SHARED)
def test_the_triggers_copy_is_a_link_to_the_workers_file(name: str) -> None:
    link = ROOT / "triggers" / name
    assert link.is_symlink()
    assert link.resolve() == (ROOT / "flows" / name).resolve()


@pytest.mark.parametrize("name", SHARED)
def test_shared_rules_need_only_the_standard_library(name: str) -> None:
    # The Functions runtime has neither pydantic nor prefect: nothing else may creep in.
    tree = ast.parse((ROOT / "flows" / name).read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_trigger_and_the_sweep_take_keys_from_the_same_rules() -> None:
    trigger_lifecycle = sys.modules[trigger_jobs.idempotency_key.__module__]
    assert Path(trigger_lifecycle.__file__ or "").resolve() == Path(lifecycle.__file__).resolve()
    assert orchestration.idempotency_key is lifecycle.idempotency_key


def test_a_batch_takes_only_its_owners_first_attempts_while_they_wait() -> None:
    batch = {"userId": "u", "jobIds": ["a", "a", 7, "", "x" * 201, "b"]}
    assert lifecycle.batch_job_ids(batch) == ["a", "b"]
    job = {"userId": "u", "batchId": "b1", "retryCount": 0, "status": "pending"}
    assert lifecycle.belongs_to_batch(job, "b1", batch)
    assert not lifecycle.belongs_to_batch({**job, "userId": "v"}, "b1", batch)
    assert not lifecycle.belongs_to_batch({**job, "batchId": "b2"}, "b1", batch)
    assert not lifecycle.belongs_to_batch({**job, "retryCount": 1}, "b1", batch)
    assert not lifecycle.belongs_to_batch({**job, "status": "completed"}, "b1", batch)
    assert lifecycle.belongs_to_batch({**job, "status": "completed"}, "b1", batch, None)
    assert not lifecycle.belongs_to_batch(job, "b1", {"jobIds": ["a"]})  # a batch with no owner
    assert not lifecycle.belongs_to_batch(None, "b1", batch)
