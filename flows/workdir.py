"""Per-run scratch folders, and removing the ones a killed worker left behind.

Each run works in `<work root>/<worker pid>-<job id>-<random>/`; the folder goes when the run ends,
however it ends. Only a killed process leaves one behind, and its pid says so: on start-up a worker
removes every folder whose process is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def work_root(state_dir: Path) -> Path:
    root = state_dir / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_dir(root: Path, job_id: str) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder for one run of one job, removed when the context exits."""
    # The id only helps a person find the folder: bounded and plain, it can never make a name
    # too long for the file system (the rules bound ids; an admin-written job may not be).
    label = "".join(c if c.isalnum() or c in "_-" else "_" for c in job_id[:64])
    return tempfile.TemporaryDirectory(prefix=f"{os.getpid()}-{label}-", dir=root)


def remove_orphans(root: Path) -> list[Path]:
    """Removes the scratch folders of processes that no longer exist; returns what it removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        pid_text = folder.name.split("-", 1)[0]
        if not folder.is_dir() or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != os.getpid() and not process_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def process_alive(pid: int) -> bool:
    """Running, and not a zombie (where nobody reaps orphans, a dead process lingers as one)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
