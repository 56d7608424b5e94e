"""The render benchmark alone: `greetings bench --only render`, kept for its old command line.

    uv run python benchmarks/render_bench.py [--runs 5] [--json]

The measurement lives in flows/bench/render.py; docs/benchmarks.md has the latest figures.
"""

from __future__ import annotations

import sys

from flows.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--only", "render", *sys.argv[1:]]))
