"""The worker image, built without Docker: deployments/Dockerfile's steps replayed in a folder.

No Docker engine runs on these machines and no base image can be pulled, so the proof that the
image starts is this: its `COPY` lines assemble exactly those paths into an empty folder (the
image's WORKDIR), its `RUN uv sync ...` lines install there as they would in the image, and its
`ENV` lines become the environment, with the WORKDIR path swapped for the folder. What the image
gets from Debian (ffmpeg, espeak-ng) and the `pip install uv` line are this machine's already.
A file the worker reads but the Dockerfile does not copy is missing here exactly as in the image.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deployments" / "Dockerfile"
DEPLOYMENTS_README = ROOT / "deployments" / "README.md"
# The README section whose table lists every variable a production worker is given.
ENVIRONMENT_HEADING = "## The worker's environment"


@dataclass
class Image:
    """An assembled image folder: its root (the WORKDIR) and the ENV of its Dockerfile."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    copied: list[str] = field(default_factory=list)

    @property
    def python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    steps = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        steps.append((keyword.upper(), rest.strip()))
    return steps


def env_pairs(arguments: str) -> dict[str, str]:
    """`ENV A=1 B="two words"` -> {"A": "1", "B": "two words"}."""
    return dict(word.split("=", 1) for word in shlex.split(arguments))


def assemble(dest: Path, dockerfile: str | None = None) -> Image:
    """Replays the Dockerfile's WORKDIR, COPY, `RUN uv sync` and ENV steps into `dest`."""
    text = DOCKERFILE.read_text() if dockerfile is None else dockerfile
    dest.mkdir(parents=True, exist_ok=True)
    image = Image(dest)
    workdir = ""
    for keyword, arguments in instructions(text):
        if keyword == "WORKDIR":
            workdir = arguments
        elif keyword == "COPY":
            *sources, target = shlex.split(arguments)
            for source in sources:
                _copy(ROOT / source, _inside(dest, workdir, target, source, len(sources) > 1))
                image.copied.append(source)
        elif keyword == "RUN" and arguments.startswith("uv sync"):
            subprocess.run([*shlex.split(arguments), "--quiet"], cwd=dest, check=True, timeout=600)
        elif keyword == "ENV":
            for name, value in env_pairs(arguments).items():
                # `PATH=/opt/greetings/.venv/bin:$PATH`: the image's part, before this machine's.
                value = value.replace("$PATH", "").rstrip(":")
                image.env[name] = value.replace(workdir, str(dest)) if workdir else value
    return image


def _inside(dest: Path, workdir: str, target: str, source: str, many: bool) -> Path:
    """Where `COPY source target` puts the source, relative to the WORKDIR."""
    relative = target.removeprefix(workdir).lstrip("/") if target.startswith("/") else target
    place = dest / relative
    if many or target.endswith("/"):
        return place / Path(source).name
    return place


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, target)


def documented_variables() -> list[str]:
    """The variables deployments/README.md lists for a production worker, in its order."""
    text = DEPLOYMENTS_README.read_text()
    section = text.split(ENVIRONMENT_HEADING, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE)
