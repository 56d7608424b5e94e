"""Pure arithmetic of the benchmark: percentiles, ratios, and the goals set for each figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks (numpy's default method).

    With 20 samples, p95 lies between the 19th and the 20th value: one slow job moves it.
    """
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Sequence[float], digits: int = 0) -> dict[str, float | int | None]:
    """p50, p95 and max of `values` (None each when there are none), and how many there were."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {
        "p50": _round(percentile(values, 50), digits),
        "p95": _round(percentile(values, 95), digits),
        "max": _round(max(values), digits),
        "n": len(values),
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to two decimals; None when either is missing or the floor is 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 2)


def per_minute(count: int, seconds: float | None) -> float | None:
    """A rate per minute; None when no time passed (nothing to divide by)."""
    if seconds is None or seconds <= 0:
        return None
    return round(count * 60 / seconds, 1)


def _round(value: float, digits: int) -> float:
    return round(value, digits) if digits else float(round(value))


# --- goals --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A target for one figure of the JSON report, found by its key path."""

    name: str
    path: tuple[str, ...]
    op: str  # "<=", "<" or ">="
    target: float
    unit: str

    def check(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.target
        if self.op == "<":
            return value < self.target
        return value >= self.target

    @property
    def wanted(self) -> str:
        return f"{self.op} {self.target:g}{self.unit}"


GOALS: tuple[Goal, ...] = (
    Goal("60 s clip: render / remux", ("render", "render_over_remux"), "<=", 3, "x"),
    Goal(
        "10 min clip: render / remux",
        ("render", "render_10min", "render_over_remux"),
        "<=",
        3,
        "x",
    ),
    Goal("queued p50 (client)", ("latency_ms", "queued", "p50"), "<", 300, " ms"),
    Goal("validating-input p50 (client)", ("latency_ms", "started", "p50"), "<", 2000, " ms"),
    # The cost issue: a lone job on a warm stack, from its creation to `completed`.
    Goal("completed p50 (client)", ("latency_ms", "completed", "p50"), "<", 3000, " ms"),
    # The cost issue: 100 names on 2 cores (an earlier issue's floor was 120).
    Goal("jobs per minute", ("throughput", "jobs_per_minute"), ">=", 150, ""),
    # The cost issue: a job's media processes against a plain remux of the same clip.
    Goal("media CPU per job / remux", ("throughput", "media_over_remux"), "<=", 3, "x"),
    Goal("worker peak RSS", ("throughput", "worker_peak_mb"), "<", 1024, " MB"),
    Goal(
        "worker memory growth",
        ("throughput", "worker_memory_growth", "growth_pct"),
        "<=",
        10,
        " %",
    ),
)


def dig(report: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path` in nested mappings, or None where any step is missing."""
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def check_goals(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each goal whose figure the report holds: its value, the target and whether it is met."""
    checked = []
    for goal in GOALS:
        value = dig(report, goal.path)
        if value is None:
            continue
        checked.append(
            {
                "goal": goal.name,
                "key": ".".join(goal.path),
                "value": value,
                "target": goal.wanted,
                "met": goal.check(float(value)),
            }
        )
    return checked
