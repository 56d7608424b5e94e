"""Processes as /proc shows them: what a service really is (its group and every descendant).

A service is more than its process group: firebase-tools starts the Firestore emulator's JVM in a
session of its own, and the Functions emulator leaves Python workers behind. Stopping, measuring
and checking a service all go through its process tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime: children it waited for (ffmpeg under the worker)


def proc_table() -> dict[int, Proc]:
    """Every live (not defunct) process, from /proc/<pid>/stat."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        own, reaped = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        table[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), own, reaped)
    return table


def tree(root: int, table: Mapping[int, Proc]) -> set[int]:
    """`root`, its process group, and every descendant of either.

    Descendants count too because not every child stays in its parent's group: firebase-tools
    starts the Firestore emulator's JVM in a session of its own.
    """
    if root not in table:
        return set()
    pgid = table[root].pgid
    found = {pid for pid, proc in table.items() if proc.pgid == pgid} | {root}
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def rss_mb(pids: Iterable[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
                break
    return total_kb / 1024


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    return sorted(pid for pid, proc in proc_table().items() if proc.pgid == pgid)
