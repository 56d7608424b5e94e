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


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def own_images(pids: Iterable[int], table: Mapping[int, Proc]) -> set[int]:
    """`pids` without the forks that have not exec'd yet.

    Between fork and exec a child still runs its parent's image, and VmRSS counts the pages it
    shares with the parent again in full (after vfork, which Python's subprocess uses, it is the
    parent's very memory). Summed over the worker's tree, a media process caught in that window
    counted the worker twice: the bench saw a 498 MB "child" with the worker's own command line
    next to the 590 MB worker (2026-12-07). Such a child is recognized by a command line equal to
    its parent's.
    """
    chosen = set(pids)
    for pid in list(chosen):
        proc = table.get(pid)
        if proc is None or proc.ppid not in chosen:
            continue
        mine = _cmdline(pid)
        if mine and mine == _cmdline(proc.ppid):
            chosen.discard(pid)
    return chosen


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
