"""`greetings bench --compare REF`: the throughput batch run by the worker of another commit, then
by this checkout's, on the same stack one after the other, so a change's cost per video is seen
side by side on one machine in one command rather than against figures from another day.

Only the worker changes: REF's tree (`git archive`, into the bench folder) is what the stack's
worker imports its flows from for the first batch; the emulators, the Prefect server, the
trigger and the rules stay this checkout's. REF must speak the same job documents and deployments
as this checkout (a commit of the last few weeks, not a year-old one).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greetings.bench import clips
from greetings.settings import REPO_ROOT, StackSettings
from greetings.stack.manager import Stack


class CompareError(RuntimeError):
    """REF cannot be checked out here."""


def resolve(ref: str) -> str:
    """REF's full commit id; `CompareError` if git does not know it."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise CompareError(f"--compare {ref}: not a commit of this repository")
    return done.stdout.strip()


def checkout(commit: str, root: Path) -> Path:
    """`commit`'s files in `root/ref-<id>` (made once; a half-made one is never used)."""
    tree = root / f"ref-{commit[:12]}"
    if (tree / "flows").is_dir():
        return tree
    partial = root / f".ref-{commit[:12]}.part"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(partial, filter="data")
    os.replace(partial, tree)
    return tree


def run_with_worker_of(
    settings: StackSettings,
    ref: str,
    run: Callable[[], dict[str, Any]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """`run()` (the throughput section) with REF's worker; the stack's own worker is back after."""
    commit = resolve(ref)
    tree = checkout(commit, clips.bench_dir(settings))
    progress(f"compare: the worker of {ref} ({commit[:12]}) from {tree}")
    with Stack(settings).worker_from(tree, echo=progress):
        found = run()
    return {"compare": {"ref": ref, "commit": commit, **found}}
