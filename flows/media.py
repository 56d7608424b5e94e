"""What is inside a media file (ffprobe) and how we run ffmpeg.

Parsing ffprobe's JSON is a pure function (`media_info_from_ffprobe`); `probe` only adds the
subprocess call, so the parsing is unit-tested without media files.

A user's upload is hostile until shown otherwise. ffmpeg guesses a format from the bytes, so a
file named `.mp4` holding an HLS playlist opened other users' media by absolute path. An upload
is therefore opened only as the container its first bytes claim (`sniff_container`), through
the one demuxer of that container, with only the `file` protocol (`upload_input_options`); and
every ffprobe/ffmpeg process runs in its own session under an address-space and CPU limit with a
wall-clock timeout (`ProcessLimits`, set per job with `limited`), so one upload cannot hold a
worker's memory or threads. Where the machine allows, a job's processes also run in a bubblewrap
sandbox of the job's own folder (`confined_to`): should a demuxer or decoder still be tricked into
opening a path, other jobs' uploads and results are not there to open, nor is the network.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO, Generic, Literal, Protocol, TypeVar

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
# Enough of ffmpeg's stderr to see why it failed without flooding a job's error message.
STDERR_TAIL_LINES = 12


# Containers an upload may be, named by what its first bytes say, and the demuxers that may read
# each: no playlist, concat list, image sequence or reference can be opened as one of them.
UPLOAD_CONTAINERS = {"mov": "mov,mp4,m4a,3gp,3g2,mj2", "matroska": "matroska,webm"}
# The first box of an MP4/MOV file (QuickTime files may open with any of these).
_MOV_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"})
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska and WebM


class ProbeError(Exception):
    """ffprobe could not read the file as media (empty, text, truncated, ...)."""


class MediaTooLarge(ProbeError):
    """Reading the file needed more memory than a media process may have (huge frames)."""


class TooManyTracks(ProbeError):
    """The header lists more tracks than any recording has: refused before ffprobe opens them
    (998 audio tracks took it to 1.3 GB)."""

    def __init__(self, path: Path, tracks: int) -> None:
        super().__init__(f"{path.name} holds {tracks} tracks")
        self.tracks = tracks


# More tracks than a recording has (validate allows one video and a few audio): counted from an
# MP4/MOV header before ffprobe reads them. Matroska's are left to ffprobe's memory limit.
MAX_TRACKS_TO_PROBE = 8


class MediaCancelled(Exception):
    """The job was cancelled: its media processes were killed."""


class MediaTimeout(Exception):
    """A media process ran past its wall-clock limit and was killed."""

    def __init__(self, program: str, seconds: float) -> None:
        super().__init__(f"{program} ran longer than {seconds:g} s and was stopped")
        self.seconds = seconds


@dataclass(frozen=True)
class ProcessLimits:
    """What one ffmpeg/ffprobe process may use. Our processes never decode video (the video
    stream is copied), so 1 GiB of address space is ample for any allowed input, and a frame
    that needs more is a hostile one."""

    timeout_s: float = 120.0
    memory_bytes: int = 1 << 30
    cpu_s: int = 120
    # ffprobe decodes a frame where a codec's header does not say enough (PNG, MJPEG): a 3 MB
    # 16000x16000 PNG took 780 MB under the 1 GiB above. Its libraries map about 280 MB of
    # address space; 512 MiB leaves room for any allowed frame and fails that decode at once,
    # while the sizes the refusal needs come from the header (measured, see README Limits).
    probe_memory_bytes: int = 512 << 20


_LIMITS: contextvars.ContextVar[ProcessLimits] = contextvars.ContextVar(
    "media_limits",
    default=ProcessLimits(),  # noqa: B039 (frozen: never mutated)
)


class Stop(Protocol):
    """What stops a context's media processes: a job's cancel (a `threading.Event`), or
    `meanwhile`'s either-of."""

    def is_set(self) -> bool: ...


_CANCEL: contextvars.ContextVar[Stop | None] = contextvars.ContextVar("media_cancel", default=None)
_SLOT: contextvars.ContextVar[threading.Semaphore | None] = contextvars.ContextVar(
    "media_slot", default=None
)
# How often a running process's supervisor looks at the clock and the cancel flag.
SUPERVISE_EVERY_S = 0.1


@contextlib.contextmanager
def limited(limits: ProcessLimits, cancel: Stop | None = None) -> Iterator[None]:
    """Media processes started in this context (a job's run) get `limits`, and are killed as
    soon as `cancel` is set (the job was cancelled)."""
    tokens = _LIMITS.set(limits), _CANCEL.set(cancel)
    try:
        yield
    finally:
        _LIMITS.reset(tokens[0])
        _CANCEL.reset(tokens[1])


@dataclass(frozen=True)
class _EitherSet:
    first: Stop | None
    second: Stop

    def is_set(self) -> bool:
        return self.second.is_set() or (self.first is not None and self.first.is_set())


_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


@contextlib.contextmanager
def for_every_job() -> Iterator[None]:
    """Media processes started in this context serve every job of a batch: no one job's cancel
    stops them (its limits, user slot and sandbox still hold)."""
    token = _CANCEL.set(None)
    try:
        yield
    finally:
        _CANCEL.reset(token)


class Later(Protocol[_T_co]):
    """What `meanwhile` gives: the work's result, waited for (or done) when asked."""

    def result(self) -> _T_co: ...


@dataclass
class _WhenAsked(Generic[_T]):
    work: Callable[[], _T]

    def result(self) -> _T:
        return self.work()


@contextlib.contextmanager
def meanwhile(work: Callable[[], _T], *, beside: bool = True) -> Iterator[Later[_T]]:
    """Runs `work` on a thread of its own while the block runs (with `beside`; else in the
    block's thread, when its result is asked for).

    The thread runs in a copy of this context, so its media processes have the job's limits,
    user slot and sandbox, and are killed when the job is cancelled. Leaving the block by an
    exception (the job failed) kills them too, and the block does not end before the thread
    does: nothing it started outlives the job's folder.
    """
    if not beside:
        yield _WhenAsked(work)
        return
    stop = threading.Event()

    def run() -> _T:
        _CANCEL.set(_EitherSet(_CANCEL.get(), stop))  # in the thread's own copy of the context
        return work()

    pool = ThreadPoolExecutor(1, "meanwhile")
    try:
        yield pool.submit(contextvars.copy_context().run, run)
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True)


@contextlib.contextmanager
def allowing(timeout_s: float) -> Iterator[None]:
    """Raises this context's wall-clock limit to at least `timeout_s` (and the CPU limit with
    it: an encoder uses several cores): a long input may take proportionally long."""
    current = _LIMITS.get()
    longer = replace(
        current,
        timeout_s=max(current.timeout_s, timeout_s),
        cpu_s=max(current.cpu_s, int(4 * timeout_s)),
    )
    token = _LIMITS.set(longer)
    try:
        yield
    finally:
        _LIMITS.reset(token)


class UserSlots:
    """How many media processes each user may run at once on this worker.

    A worker runs many jobs on threads; without this, one user's hostile or huge uploads held
    every thread's ffmpeg for minutes while another user's one-second job waited. A job takes
    its user's slot for each process it runs, and waits for one (a thread, not a core), so
    other users' processes start at once.
    """

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._guard = threading.Lock()
        self._slots: dict[str, threading.Semaphore] = {}

    def of(self, user_id: str) -> threading.Semaphore:
        with self._guard:
            if user_id not in self._slots:
                self._slots[user_id] = threading.BoundedSemaphore(self._per_user)
            return self._slots[user_id]


@contextlib.contextmanager
def for_user(slot: threading.Semaphore) -> Iterator[None]:
    """Media processes started in this context take one of `slot`'s places while they run."""
    token = _SLOT.set(slot)
    try:
        yield
    finally:
        _SLOT.reset(token)


@contextlib.contextmanager
def _user_slot() -> Iterator[None]:
    slot = _SLOT.get()
    if slot is None:
        yield
        return
    cancel = _CANCEL.get()
    # Waiting for a slot can be cancelled too (and ends with the process's own time limit).
    deadline = time.monotonic() + _LIMITS.get().timeout_s
    while not slot.acquire(timeout=SUPERVISE_EVERY_S):
        if cancel is not None and cancel.is_set():
            raise MediaCancelled("the job was cancelled")
        if time.monotonic() > deadline:
            raise MediaTimeout("a media slot", _LIMITS.get().timeout_s)
    try:
        yield
    finally:
        slot.release()


class _Supervisor:
    """Kills `procs` (their whole sessions) at the deadline or when the job is cancelled."""

    def __init__(self, procs: Sequence[subprocess.Popen[bytes]], program: str) -> None:
        self._procs = procs
        self._program = program
        self._limits = _LIMITS.get()
        self._cancel = _CANCEL.get()
        self._done = threading.Event()
        self.stopped_by: str | None = None  # "timeout" or "cancel"
        self._thread = threading.Thread(target=self._watch, name="media-supervisor", daemon=True)

    def _watch(self) -> None:
        deadline = time.monotonic() + self._limits.timeout_s
        while not self._done.wait(SUPERVISE_EVERY_S):
            if self._cancel is not None and self._cancel.is_set():
                self.stopped_by = "cancel"
            elif time.monotonic() > deadline:
                self.stopped_by = "timeout"
            else:
                continue
            for proc in self._procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            return

    def __enter__(self) -> _Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        if self.stopped_by == "cancel":
            raise MediaCancelled("the job was cancelled")
        if self.stopped_by == "timeout":
            raise MediaTimeout(self._program, self._limits.timeout_s)


def _limited_command(cmd: Sequence[str]) -> list[str]:
    """`cmd` under the current limits: `prlimit` (util-linux, in Debian and the worker image)
    sets them for the process it becomes, so nothing runs in between (no preexec_fn in a
    threaded worker)."""
    limits = _LIMITS.get()
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return list(cmd)
    return [prlimit, f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_s}", "--", *cmd]


# --- The sandbox ------------------------------------------------------------------------------

SandboxMode = Literal["auto", "bwrap", "off"]


class SandboxUnavailable(RuntimeError):
    """A sandbox is required (GREETINGS_SANDBOX=bwrap) but bwrap cannot make one here."""


@dataclass(frozen=True)
class _Bwrap:
    """How this machine's bwrap makes a sandbox (found once by `bwrap_setup`)."""

    executable: str
    # A fresh /proc of the sandbox's own processes. A container runtime that masks parts of its
    # /proc (Docker's and Kubernetes' defaults) makes the kernel refuse to mount another one;
    # ffmpeg needs none, so the sandbox then has no /proc rather than the worker's.
    fresh_proc: bool


_CONFINED_TO: contextvars.ContextVar[tuple[_Bwrap, Path] | None] = contextvars.ContextVar(
    "media_confined_to", default=None
)
# PATH inside the sandbox: the environment is cleared (the worker's holds API keys).
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# What of /etc the media programs read: the dynamic linker's cache, and the alternatives links
# through which Debian installs libraries ffmpeg loads (libblas.so.3 and liblapack.so.3).
_SANDBOX_ETC = ("/etc/ld.so.cache", "/etc/alternatives")


def _system_view() -> list[str]:
    """bwrap arguments that show the system's programs and libraries, read-only."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        path = Path(top)
        if path.is_symlink():  # merged /usr (Debian 12): links into /usr
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    for etc in _SANDBOX_ETC:
        args += ["--ro-bind-try", etc, etc]
    return args


def _bwrap_command(
    bwrap: _Bwrap, folder: Path, named: Sequence[str], cmd: Sequence[str]
) -> list[str]:
    """`cmd` in a sandbox where `folder` is the only place it can write and the files `named`
    the only ones of the worker's it can read; no network, no other process, no environment."""
    return [
        bwrap.executable,
        "--unshare-all",
        # The command itself is the namespace's first process, so bwrap reaps it and its CPU
        # time reaches the worker's (getrusage, `greetings bench`). Under bwrap's own init it
        # was lost: a 1.4 CPU s encode counted 0.0. ffmpeg and ffprobe spawn no children to
        # reap and handle SIGTERM and SIGINT themselves, which a first process must.
        "--as-pid-1",
        "--die-with-parent",  # killing bwrap (the job's process group) kills what it runs
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        _SANDBOX_PATH,
        *_system_view(),
        *(["--proc", "/proc"] if bwrap.fresh_proc else []),
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(folder),
        str(folder),
        *(arg for path in named for arg in ("--ro-bind", path, path)),
        "--chdir",
        str(folder),
        "--",
        *cmd,
    ]


@cache
def bwrap_setup() -> _Bwrap | str:
    """How bwrap sandboxes here, or why it cannot (not installed, no user namespaces, ...).

    Found once per process by running `true` in the very sandbox a job gets: with a fresh /proc
    if the kernel allows one, else without.
    """
    executable = shutil.which("bwrap")
    if executable is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    problem = ""
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as folder:
        for bwrap in (_Bwrap(executable, fresh_proc=True), _Bwrap(executable, fresh_proc=False)):
            try:
                done = subprocess.run(
                    _bwrap_command(bwrap, Path(folder), [], ["true"]),
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"bwrap did not run: {exc}"
            if done.returncode == 0:
                return bwrap
            problem = stderr_tail(done.stderr.decode(errors="replace"), 1)
    return f"bwrap cannot make a sandbox here: {problem}"


@cache
def sandboxing(mode: SandboxMode) -> _Bwrap | None:
    """The sandbox jobs' media processes get with `mode` (None: none), said once in the log.

    "auto" sandboxes where bwrap works; "bwrap" raises `SandboxUnavailable` where it does not.
    Without a sandbox each job still has its own 0700 folder, its limits and its own session.
    """
    if mode == "off":
        log.warning("media processes are not sandboxed (GREETINGS_SANDBOX=off)")
        return None
    setup = bwrap_setup()
    if isinstance(setup, _Bwrap):
        log.info(
            "each job's media processes run in a bwrap sandbox of its own folder (%s /proc)",
            "a fresh" if setup.fresh_proc else "no",
        )
        return setup
    if mode == "bwrap":
        raise SandboxUnavailable(f"GREETINGS_SANDBOX=bwrap, but {setup}")
    log.warning("media processes are not sandboxed: %s", setup)
    return None


@contextlib.contextmanager
def confined_to(folder: Path, mode: SandboxMode = "bwrap") -> Iterator[None]:
    """Media processes started in this context run in a sandbox (`mode`: see `sandboxing`)
    that shows them `folder` (read-write, a job's scratch folder), each existing file named by
    an absolute path on their command line (read-only: a batch's shared download, say), the
    system's programs, and nothing else: no other job's files, no network."""
    bwrap = sandboxing(mode)
    token = _CONFINED_TO.set((bwrap, folder.resolve()) if bwrap is not None else None)
    try:
        yield
    finally:
        _CONFINED_TO.reset(token)


@contextlib.contextmanager
def confined_instead_to(folder: Path) -> Iterator[None]:
    """In a sandboxed context, media processes started in this one see `folder` instead of its
    folder (a batch's shared work, done for all its jobs by the job that asks first); an
    unsandboxed context stays so."""
    confined = _CONFINED_TO.get()
    token = _CONFINED_TO.set((confined[0], folder.resolve()) if confined is not None else None)
    try:
        yield
    finally:
        _CONFINED_TO.reset(token)


def _files_named(cmd: Sequence[str], folder: Path) -> list[str]:
    """The files outside `folder` that `cmd` names by absolute path: only those are shown, one
    file at a time, so naming a file never shows the rest of its folder."""
    named = {
        arg
        for arg in cmd
        if arg.startswith("/") and not Path(arg).is_relative_to(folder) and Path(arg).is_file()
    }
    return sorted(named)


def _command(cmd: Sequence[str]) -> list[str]:
    """`cmd` as it is started: under the current limits, in the current sandbox if any."""
    limited = _limited_command(cmd)
    confined = _CONFINED_TO.get()
    if confined is None:
        return limited
    bwrap, folder = confined
    return _bwrap_command(bwrap, folder, _files_named(cmd, folder), limited)


def _status(returncode: int) -> int:
    """A process's exit status as if unsandboxed: bwrap exits 128 + n for a child killed by
    signal n, where Popen says -n (a probe killed for memory is told apart by that)."""
    if _CONFINED_TO.get() is not None and 128 < returncode <= 128 + signal.SIGRTMAX:
        return 128 - returncode
    return returncode


def _run(cmd: Sequence[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs a media process in its own session under the current limits and cancel flag."""
    with _user_slot():
        return _run_now(cmd, stdin)


def _run_now(cmd: Sequence[str], stdin: bytes | None) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.Popen(
        _command(cmd),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with _Supervisor([proc], Path(cmd[0]).name):
        stdout, stderr = proc.communicate(stdin)
    return subprocess.CompletedProcess(proc.args, _status(proc.returncode), stdout, stderr)


def sniff_container(path: Path) -> str:
    """The container an upload's first bytes claim (`mov` or `matroska`); ProbeError if none."""
    with path.open("rb") as file:
        head = file.read(12)
    if head[:4] == _EBML_MAGIC:
        return "matroska"
    if len(head) >= 8 and head[4:8] in _MOV_FIRST_BOXES:
        return "mov"
    raise ProbeError("not an MP4, MOV, WebM or Matroska file (by its first bytes)")


def upload_input_options(container: str) -> list[str]:
    """ffmpeg/ffprobe options placed before an upload's path: one demuxer, local file only."""
    return [
        "-f",
        container,
        "-format_whitelist",
        UPLOAD_CONTAINERS[container],
        "-protocol_whitelist",
        "file",
    ]


class FfmpegError(Exception):
    """ffmpeg exited non-zero; the message ends with the last lines of its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr_tail = stderr_tail(stderr)
        super().__init__(f"ffmpeg exited with {returncode}: {self.stderr_tail}")


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    fps: float
    rotation: int  # degrees, 0-359, as the display matrix (or the old `rotate` tag) says


# The most channels a recording's sound has (7.1). Uploads with more are refused at validation
# (flows/stages/validate.py); the render mixes no more than this in the worker's memory either.
# Its slot is decoded in every channel into that memory: 12 s of a 255-channel Opus track (which
# its header may claim) would be about 300 MB.
MAX_AUDIO_CHANNELS = 8


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    profile: str | None
    sample_rate: int
    channels: int
    channel_layout: str | None
    bit_rate: int | None
    frame_size: int | None  # samples per packet, when the codec fixes it
    time_base: Fraction
    start_s: float = 0.0  # presentation time of the stream's first sample


@dataclass(frozen=True)
class MediaInfo:
    size_bytes: int
    duration_s: float
    format_name: str
    video: VideoStream | None
    audio: AudioStream | None
    video_streams: int = 0  # cover art is no video stream
    audio_streams: int = 0
    container: str = ""  # for an upload: what `sniff_container` found


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run_ffmpeg(args: Sequence[str], *, stdin: bytes | None = None) -> bytes:
    """Run `ffmpeg <args>` (quiet, never prompting) and return its stdout."""
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    if stdin is not None:
        # -nostdin would stop ffmpeg reading the data we pipe in.
        cmd.remove("-nostdin")
    proc = _run(cmd, stdin)
    if proc.returncode != 0:
        raise FfmpegError(cmd, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


# The containers the voices write (flows/stages/synthesize.py `speech_extension`, Piper's WAV).
SPEECH_FORMATS = {".mp3": "mp3", ".wav": "wav"}


def open_speech(path: Path) -> Any:
    """The voice's speech file opened in this process with PyAV, through its own container's
    demuxer only (nothing in it can name another file); it has an audio stream."""
    import av  # here, not at the top: of what imports this module, only the worker needs it

    container = SPEECH_FORMATS.get(path.suffix.lower())
    if container is None:
        raise ValueError(f"{path.name}: not a speech file the voices write")
    try:
        media = av.open(str(path), format=container)
    except av.FFmpegError as exc:
        raise FfmpegError(["pyav", str(path)], 1, str(exc)) from exc
    if not media.streams.audio:
        media.close()
        raise FfmpegError(["pyav", str(path)], 1, f"{path.name}: no audio stream")
    return media


def decode_speech(path: Path, rate: int, max_s: float) -> bytes:
    """The voice's speech file as mono float32 little-endian samples at `rate`, decoded in this
    process with PyAV (at most `max_s` seconds of it).

    Only for speech the worker had made (an espeak-ng, Piper or ElevenLabs file), never for an
    upload: uploads go through `upload_input_options` and the sandbox. The file is opened through
    its own container's demuxer only, so nothing in it can name another file. An ffmpeg process
    for this 1-2 s decode cost 0.06 CPU s, nearly all of it loading Debian ffmpeg's 215 shared
    libraries; PyAV's takes 0.003 s and gives the same samples as `ffmpeg -ac 1 -ar <rate> -f
    f32le`: bit for bit from WAV and MP3 at 16-48 kHz, mono or stereo, but for MP3 at 24 kHz,
    which PyAV's FFmpeg 8.1 decodes up to 0.004 apart from Debian's 5.1 with the same speech start,
    end, level and peak (tests/unit/test_media.py; docs/benchmarks.md). Errors are
    `FfmpegError`s, as from the command.
    """
    import av  # here, not at the top: of what imports this module, only the worker needs it

    limit = round(max_s * rate)
    out: list[bytes] = []
    kept = 0
    try:
        with open_speech(path) as media:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            # Frame by frame (None flushes the resampler), so the limit stops the decoding too.
            for frame in itertools.chain(media.decode(media.streams.audio[0]), [None]):
                for done in resampler.resample(frame):
                    # A packed plane may be padded past its samples.
                    out.append(bytes(done.planes[0])[: done.samples * 4])
                    kept += done.samples
                if kept >= limit:
                    break
    except av.FFmpegError as exc:
        raise FfmpegError(["pyav", str(path)], 1, str(exc)) from exc
    return b"".join(out)[: limit * 4]


def run_ffprobe(args: Sequence[str]) -> dict[str, Any]:
    cmd = [FFPROBE, "-v", "error", "-print_format", "json", *args]
    limits = _LIMITS.get()
    token = _LIMITS.set(
        replace(limits, memory_bytes=min(limits.memory_bytes, limits.probe_memory_bytes))
    )
    try:
        proc = _run(cmd)
    finally:
        _LIMITS.reset(token)
    if proc.returncode != 0:
        said = stderr_tail(proc.stderr.decode(errors="replace"))
        # Out of address space: an allocation failed, a library could not be mapped, or the
        # kernel stopped it (SIGSEGV/SIGKILL/SIGXCPU).
        out_of_memory = ("Cannot allocate memory", "failed to map segment")
        if any(words in said for words in out_of_memory) or proc.returncode < 0:
            raise MediaTooLarge(said or f"ffprobe was stopped (signal {-proc.returncode})")
        raise ProbeError(said or "ffprobe failed")
    try:
        data = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise ProbeError(f"ffprobe printed no JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProbeError("ffprobe printed no JSON object")
    return data


def probe(path: Path) -> MediaInfo:
    """Streams, duration and size of a media file; `ProbeError` if it is not readable media."""
    if not path.is_file():
        raise ProbeError(f"{path} is not a file")
    data = run_ffprobe(["-show_format", "-show_streams", str(path)])
    info = media_info_from_ffprobe(data, size_bytes=path.stat().st_size)
    if "mov" in info.format_name.split(",") and isobmff_truncated(path):
        raise ProbeError(f"{path.name} is truncated: it ends inside its last MP4 box")
    return info


def probe_upload(path: Path) -> MediaInfo:
    """`probe` for a user's upload: opened only as the container its first bytes claim."""
    if not path.is_file():
        raise ProbeError(f"{path} is not a file")
    container = sniff_container(path)
    if container == "mov":
        try:
            tracks = len(mp4_track_kinds(path))
        except ProbeError:
            tracks = 0  # no index: ffprobe says why, as for any file
        if tracks > MAX_TRACKS_TO_PROBE:
            raise TooManyTracks(path, tracks)
    data = run_ffprobe(
        ["-show_format", "-show_streams", *upload_input_options(container), str(path)]
    )
    _fill_duration(data, path, container)
    info = media_info_from_ffprobe(data, size_bytes=path.stat().st_size)
    if container == "mov" and isobmff_truncated(path):
        raise ProbeError(f"{path.name} is truncated: it ends inside its last MP4 box")
    return replace(info, container=container)


# How far `packets_end_s` reads: past any duration an upload is allowed (GREETINGS_MAX_INPUT_SECONDS
# refuses longer ones), so a longer file is known to be too long without being read to its end.
PACKET_SCAN_LIMIT_S = 3600.0


def _fill_duration(data: dict[str, Any], path: Path, container: str | None) -> None:
    """A browser's MediaRecorder writes WebM live, with no Duration in its header: then the
    packets say how long it is (in place, in ffprobe's `format`)."""
    fmt = data.get("format")
    if isinstance(fmt, dict) and fmt.get("duration") is None and container == "matroska":
        fmt["duration"] = packets_end_s(path, container)


def packets_end_s(path: Path, container: str, limit_s: float = PACKET_SCAN_LIMIT_S) -> float | None:
    """Where the first video stream's packets end (None: it has none), read without decoding,
    at most `limit_s` in."""
    data = run_ffprobe(
        [
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-read_intervals",
            f"%+{limit_s:g}",
            *upload_input_options(container),
            str(path),
        ]
    )
    ends = [
        start + (_float(packet.get("duration_time")) or 0.0)
        for packet in data.get("packets") or []
        if (start := _float(packet.get("pts_time"))) is not None
    ]
    return max(ends, default=None)


def isobmff_truncated(path: Path) -> bool:
    """Whether an MP4/MOV file ends inside one of its top-level boxes (a cut-off file).

    With its index (`moov`) first, ffprobe reads such a file as whole and ffmpeg copies what
    media there is without an error, so half a video would render as a shorter, broken one.
    """
    size = path.stat().st_size
    at = 0
    with path.open("rb") as file:
        while at + 8 <= size:
            file.seek(at)
            header = file.read(16)
            box_size = int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big")
            if box_size < 8:
                return False  # 0: the box runs to the end of the file; else not ours to judge
            if at + box_size > size:
                # A real box type (`mdat`, `moov`...) cut short, not trailing bytes of padding.
                return header[4:8].isascii() and header[4:8].decode().isprintable()
            at += box_size
    return False


def mp4_duration_s(path: Path) -> float:
    """The movie's duration from its `moov/mvhd` box, without starting ffprobe.

    For a file our own mux wrote (MP4, index first) this is what ffprobe reports as the format's
    duration, read in microseconds instead of ~70 ms of a process start. `ProbeError` if the file
    has no readable movie header.
    """
    with path.open("rb") as file:
        moov = _find_box(file, b"moov", 0, path.stat().st_size)
        if moov is None:
            raise ProbeError(f"{path.name} has no moov box")
        mvhd = _find_box(file, b"mvhd", *moov)
        if mvhd is None:
            raise ProbeError(f"{path.name} has no mvhd box")
        file.seek(mvhd[0])
        body = file.read(32)
    version = body[0] if body else -1
    if version == 0 and len(body) >= 20:
        timescale, duration = int.from_bytes(body[12:16], "big"), int.from_bytes(body[16:20], "big")
    elif version == 1 and len(body) >= 32:
        timescale, duration = int.from_bytes(body[20:24], "big"), int.from_bytes(body[24:32], "big")
    else:
        raise ProbeError(f"{path.name}: unreadable mvhd box (version {version})")
    if timescale <= 0:
        raise ProbeError(f"{path.name}: mvhd timescale is {timescale}")
    return duration / timescale


def mp4_track_kinds(path: Path) -> list[str]:
    """The handler type of each track (`vide`, `soun`, ...) from the `moov` box, as
    `mp4_duration_s` reads it: ffmpeg drops a stream none of whose packets it could copy (an
    upload's video whose codec setup is damaged) and still exits 0. `ProbeError` if there is
    no movie box."""
    kinds = []
    with path.open("rb") as file:
        moov = _find_box(file, b"moov", 0, path.stat().st_size)
        if moov is None:
            raise ProbeError(f"{path.name} has no moov box")
        at, end = moov
        while (trak := _find_box(file, b"trak", at, end)) is not None:
            mdia = _find_box(file, b"mdia", *trak)
            hdlr = _find_box(file, b"hdlr", *mdia) if mdia is not None else None
            if hdlr is not None:
                file.seek(hdlr[0] + 8)  # version and flags, pre_defined, then the handler type
                kinds.append(file.read(4).decode("latin-1"))
            at = trak[1]
    return kinds


def _find_box(file: BinaryIO, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The (body start, body end) of the first `kind` box between `start` and `end`."""
    at = start
    while at + 8 <= end:
        file.seek(at)
        header = file.read(16)
        box_size, header_size = int.from_bytes(header[:4], "big"), 8
        if box_size == 1 and len(header) == 16:
            box_size, header_size = int.from_bytes(header[8:16], "big"), 16
        elif box_size == 0:
            box_size = end - at
        if box_size < header_size or at + box_size > end:
            return None
        if header[4:8] == kind:
            return at + header_size, at + box_size
        at += box_size
    return None


def probe_with_first_packets(
    path: Path, *, seconds: float = 0.5, container: str | None = None
) -> tuple[MediaInfo, dict[int, int]]:
    """`probe`, plus the pts of each stream's first packet within the first `seconds`.

    One ffprobe run instead of two: start-up is most of what a probe costs. With `container`
    (an upload's, from `sniff_container`) the file is opened only as that container
    (`upload_input_options`), and the info says so.
    """
    if not path.is_file():
        raise ProbeError(f"{path} is not a file")
    opened_as = upload_input_options(container) if container is not None else []
    data = run_ffprobe(
        [
            "-show_format",
            "-show_streams",
            "-show_entries",
            "packet=stream_index,pts",
            "-read_intervals",
            f"%+{seconds:g}",
            *opened_as,
            str(path),
        ]
    )
    _fill_duration(data, path, container)
    info = media_info_from_ffprobe(data, size_bytes=path.stat().st_size)
    if container is not None:
        info = replace(info, container=container)
    return info, first_packets(data)


def first_packets(data: Mapping[str, Any]) -> dict[int, int]:
    """Stream index -> pts of its first packet, from ffprobe's `packets` (before any edit list)."""
    found: dict[int, int] = {}
    for packet in data.get("packets") or []:
        index, pts = _int(packet.get("stream_index")), _int(packet.get("pts"))
        if index is not None and pts is not None:
            found.setdefault(index, pts)
    return found


# --- parsing (pure) ---------------------------------------------------------------------------


def media_info_from_ffprobe(data: Mapping[str, Any], *, size_bytes: int) -> MediaInfo:
    fmt = data.get("format")
    streams = data.get("streams") or []
    if not isinstance(fmt, Mapping) or not streams:
        raise ProbeError("no media streams found")
    video = next(
        (
            _video_stream(s)
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
        ),
        None,
    )
    audio = next((_audio_stream(s) for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise ProbeError("no audio or video stream found")
    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [d for d in (_float(s.get("duration")) for s in streams) if d is not None]
        duration = max(durations, default=None)
    if duration is None:
        raise ProbeError("duration unknown")
    return MediaInfo(
        size_bytes=size_bytes,
        duration_s=duration,
        format_name=str(fmt.get("format_name", "")),
        video=video,
        audio=audio,
        video_streams=sum(
            s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
            for s in streams
        ),
        audio_streams=sum(s.get("codec_type") == "audio" for s in streams),
    )


def _video_stream(s: Mapping[str, Any]) -> VideoStream:
    return VideoStream(
        index=int(s.get("index", 0)),
        codec=str(s.get("codec_name", "")),
        width=int(s.get("width") or 0),
        height=int(s.get("height") or 0),
        fps=_rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate")) or 0.0,
        rotation=_rotation(s),
    )


def _audio_stream(s: Mapping[str, Any]) -> AudioStream:
    codec = str(s.get("codec_name", ""))
    profile = s.get("profile")
    return AudioStream(
        index=int(s.get("index", 0)),
        codec=codec,
        profile=str(profile) if profile is not None else None,
        sample_rate=_int(s.get("sample_rate")) or 0,
        channels=_int(s.get("channels")) or 0,
        channel_layout=s.get("channel_layout"),
        bit_rate=_int(s.get("bit_rate")),
        frame_size=codec_frame_size(codec, profile),
        time_base=_fraction(s.get("time_base")) or Fraction(1, 1),
        start_s=_float(s.get("start_time")) or 0.0,
    )


def codec_frame_size(codec: str, profile: object = None) -> int | None:
    """Samples per packet for codecs that fix it (ffprobe does not print it)."""
    if codec == "aac":
        # HE-AAC packets carry 2048 output samples (SBR doubles the core's 1024).
        return 2048 if isinstance(profile, str) and profile.startswith("HE") else 1024
    return {"mp3": 1152, "opus": 960, "ac3": 1536, "eac3": 1536}.get(codec)


def _rotation(s: Mapping[str, Any]) -> int:
    for side in s.get("side_data_list") or []:
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    tag = (s.get("tags") or {}).get("rotate")
    return round(float(tag)) % 360 if tag is not None else 0


def _rate(value: object) -> float | None:
    frac = _fraction(value)
    return float(frac) if frac else None


def _fraction(value: object) -> Fraction | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    num, _, den = value.partition("/")
    try:
        return Fraction(int(num), int(den)) if int(den) else None
    except ValueError:
        return None


def _float(value: object) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object) -> int | None:
    try:
        return int(value) if value not in (None, "", "N/A") else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
