"""ffmpeg command lines for the render (pure; filter graphs are built from numbers only): the
analysis decode (greeting and greeting slot as PCM, plus the original audio track copied
aside and its first seconds as PCM for the head), the mix graph (run here by the full re-encode,
and by flows/stages/render/head.py in the worker for the head), the concat list and final mux
that splice the head before the copied packets, and the full-audio re-encode used when the
head cannot be spliced.

Every input that is the user's upload goes through `Upload.input`: opened only as the container
its first bytes claim (`flows.media.upload_input_options`) and read no further than the duration
its probe claims (plus `READ_MARGIN_S`), so a WebM whose header says 8 s while its clusters hold
2 h is neither decoded nor copied past its claim. Inputs the render made itself (the greeting, the
head, the concat list of the copied track) are opened as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flows.media import AudioStream, upload_input_options
from flows.stages.render.timing import SEAM_SCAN_S, HeadPlan, seconds_arg

# Loudness and silence are measured on a mono/low-rate decode: plenty for levels, cheap in Python.
ANALYSIS_RATE = 24000
DEFAULT_AUDIO_BITRATE = 128_000
MIN_AUDIO_BITRATE = 64_000
MAX_AUDIO_BITRATE = 320_000
HEAD_NAME = "head.nut"  # the head, encoded in the worker (flows/stages/render/head.py)
# The original's first seconds at their own rate and channels, for the head's mix: past the
# analysis window as far as the seam search may look (SEAM_SEARCH_FRAMES plus the guard and the
# encoder's frames: 3.3 s at 16 kHz). A head needing more is made by the full re-encode instead.
HEAD_PCM_NAME = "original-head.f32"
HEAD_PCM_AFTER_S = SEAM_SCAN_S + 1.0
TAIL_NAME = "original-audio.m4a"
LIST_NAME = "audio.ffconcat"
ORIGINAL_PCM_NAME = "original.f32"
ADTS_NAME = "original-head.aac"
# Video codecs ffmpeg 5.1's MP4 muxer holds as they are: copied. Any other (VP8, what Chrome's
# and Firefox's MediaRecorder write by default: "Could not find tag for codec vp8") is re-encoded.
MP4_VIDEO_CODECS = frozenset({"h264", "hevc", "vp9", "av1", "mpeg4"})
# The re-encode: H.264 at the input's size (yuv420p needs even sides: an odd last row or column
# goes) and the input's frame times, each frame at its own timestamp (browser recordings have a
# variable frame rate in a millisecond time base; the default time base of 1/fps rounded them).
REENCODED_VIDEO = [
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-crf",
    "23",
    "-pix_fmt",
    "yuv420p",
    "-filter:v",
    "crop=trunc(iw/2)*2:trunc(ih/2)*2",
    "-fps_mode",
    "passthrough",
    "-enc_time_base:v",
    "-1",
]
# Decoding and encoding video are the only parts of a render whose memory grows with the frame
# and with threads, and a media process gets 1 GiB of address space (ffmpeg alone maps about
# 300 MB). Left to choose, the decoder and x264 take threads by core count: 8 of each failed at
# 1080p, and a second VP8 decoder thread alone cost about 190 MB there. Smallest address-space
# limit (in 64 MB steps) a whole VP8 + Opus render passed under: 1080p with 1 decoder and 4
# encoder threads 832 MB (2 + 4: 960 MB); 4096x2304 with 1 decoder thread and 2 sliced encoder
# threads, a 3-frame lookahead and no B-frames 832 MB (with 5 frames and a B-frame: 960 MB).
FULL_HD_PIXELS = 1920 * 1088
SMALL_FRAME_THREADS = (["-threads", "1"], ["-threads", "4"])
LARGE_FRAME_THREADS = (
    ["-threads", "1"],
    ["-threads", "2", "-x264-params", "sliced-threads=1:rc-lookahead=3:bframes=0"],
)


@dataclass(frozen=True)
class VideoPlan:
    """How the output gets the input's video stream."""

    decode: list[str]  # decoder options, before the upload's -i
    encode: list[str]  # the video stream's output options

    @property
    def reencoded(self) -> bool:
        return self.encode != COPY_VIDEO.encode


COPY_VIDEO = VideoPlan(decode=[], encode=["-c:v", "copy"])


def video_plan(codec: str, width: int, height: int) -> VideoPlan:
    """Copied if MP4 holds the codec, else re-encoded with threads the frame size allows."""
    if codec in MP4_VIDEO_CODECS:
        return COPY_VIDEO
    small = width * height <= FULL_HD_PIXELS
    decode, encode = SMALL_FRAME_THREADS if small else LARGE_FRAME_THREADS
    return VideoPlan(decode=list(decode), encode=[*REENCODED_VIDEO, *encode])


# Read past what an upload's probe claims: no honest file has media there (its duration is its
# streams' end), and less than the render's output check tolerates (0.25 s), so a file whose
# header claims less than it holds renders to its claim and passes that check.
READ_MARGIN_S = 0.1


@dataclass(frozen=True)
class Upload:
    """The user's upload, as every ffmpeg command line of the render opens it."""

    path: Path
    container: str  # `sniff_container`'s name for it: "mov" or "matroska"
    claimed_s: float  # the duration its probe claims

    def input(self, seconds: float | None = None, *, decode: Sequence[str] = ()) -> list[str]:
        """Options and `-i` for the upload: its one demuxer, the file protocol alone, and a
        read limit of `seconds` (at most the claim plus READ_MARGIN_S); `decode`: decoder
        options, first."""
        limit = self.claimed_s + READ_MARGIN_S
        if seconds is not None:
            limit = min(limit, seconds)
        return [
            *decode,
            *upload_input_options(self.container),
            "-t",
            f"{limit:.6f}",
            "-i",
            str(self.path),
        ]


@dataclass(frozen=True)
class RoomTone:
    """A stretch of the original's room tone, looped under the whole greeting slot."""

    start: int  # its first sample, counted from the original's first decoded sample
    length: int  # samples; the loop plays them forwards, then backwards: no jump, no click
    gain_db: float


@dataclass(frozen=True)
class MixSpec:
    sample_rate: int
    channels: int
    layout: str
    greeting_samples: int  # the greeting is cut here (its trailing silence)
    slot_samples: int  # greeting slot: presentation samples 0 .. slot_samples
    crossfade_samples: int
    tempo: float
    gain_db: float
    start: int  # presentation sample of the graph's first output sample (<= 0)
    original_start: int  # presentation sample of the original's first decoded sample
    end: int | None  # presentation sample where the output stops; None: the original's end
    room: RoomTone | None = None  # None: the slot's gaps stay silent (the original has no floor)
    greeting_start: int = 0  # the greeting's leading silence cut (only to make it fit)


# Re-stamps frames by sample count. asetpts truncates its result, and N/SR/TB in doubles comes out
# a hair under N for about one N in seven at 22.05/32/44.1 kHz (8160/44100/(1/44100) is
# 8159.99999...; 3 in 10,000 at 48 kHz): such a frame came out a sample early, apad carried that
# on to the end of the head, and the head's packet overlapping the first copied one then passed
# `gte(pts, stop)` one sample under `stop`: an extra frame, everything after it 1024 samples late.
# Rounded, the stamp is exact for any time base.
RESTAMP = "asetpts=round(N/SR/TB)"


def channel_layout(audio: AudioStream) -> str:
    if audio.channel_layout and audio.channel_layout.replace("(", "").replace(")", "").isalnum():
        return audio.channel_layout
    return {1: "mono", 2: "stereo"}.get(audio.channels, f"{audio.channels:d}c")


def mix_graph(spec: MixSpec, *, original: str = "0:a:0", greeting: str = "1:a:0") -> str:
    """The filter graph mixing greeting and original into `[mix]`, on sample counts, not pts.

    The greeting plays from time 0 and fades out over the crossfade before the slot's end, where
    the original fades in (quarter-sine curves: equal power). With `spec.room`, the original's
    room tone plays under the whole slot and fades out with the greeting, so the slot holds the
    recording's own floor wherever the greeting is silent.
    """
    sr = spec.sample_rate
    fade = max(1, min(spec.crossfade_samples, spec.slot_samples))
    fade_at = spec.slot_samples - fade - spec.start  # graph sample where the crossfade starts
    slot = spec.slot_samples - spec.start
    fmt = f"aformat=sample_fmts=fltp:sample_rates={sr:d}:channel_layouts={spec.layout}"
    # One mono copy per output channel: the level measured on the mono greeting is what plays.
    spread = "|".join(f"c{i:d}=c0" for i in range(spec.channels))
    tempo = f"atempo={spec.tempo:.6f}," if spec.tempo > 1.0 else ""
    greeting_chain = (
        f"[{greeting}]aresample={sr:d},aformat=sample_fmts=fltp:channel_layouts=mono,"
        f"{RESTAMP},{_greeting_cut(spec)}{tempo}"
        f"volume={spec.gain_db:.2f}dB,pan={spec.channels:d}c|{spread},{fmt},"
        f"{_delay(-spec.start)}apad=whole_len={slot:d},atrim=end_sample={slot:d},"
        f"afade=t=out:start_sample={fade_at:d}:nb_samples={fade:d}:curve=qsin[greeting]"
    )
    source = f"[{original}]"
    room_chain = ""
    if spec.room is not None:
        room = spec.room
        source = "[original_in]"
        room_chain = (
            f"[{original}]asplit=2[original_in][room_in];"
            f"[room_in]{fmt},{RESTAMP},atrim=start_sample={room.start:d}:"
            f"end_sample={room.start + room.length:d},{RESTAMP},asplit=2[room_fwd][room_back];"
            "[room_back]areverse[room_rev];"
            "[room_fwd][room_rev]concat=n=2:v=0:a=1,"
            f"aloop=loop=-1:size={2 * room.length:d},{RESTAMP},"
            f"atrim=end_sample={spec.slot_samples:d},volume={room.gain_db:.2f}dB,"
            f"{_delay(-spec.start)}"
            f"afade=t=out:start_sample={fade_at:d}:nb_samples={fade:d}:curve=qsin[room];"
        )
    original_chain = (
        f"{source}{fmt},{RESTAMP},{_delay(spec.original_start - spec.start)}"
        f"afade=t=in:start_sample={fade_at:d}:nb_samples={fade:d}:curve=qsin[original]"
    )
    trim = f",atrim=end_sample={spec.end - spec.start:d}" if spec.end is not None else ""
    inputs = (
        "[greeting][original][room]amix=inputs=3"
        if spec.room
        else ("[greeting][original]amix=inputs=2")
    )
    return (
        f"{room_chain}{greeting_chain};{original_chain};"
        f"{inputs}:duration=longest:normalize=0{trim}[mix]"
    )


def _greeting_cut(spec: MixSpec) -> str:
    if spec.greeting_start <= 0:
        return f"atrim=end_sample={spec.greeting_samples:d},"
    # atrim keeps the frames' times: re-stamped, the greeting's first kept sample is at 0.
    return (
        f"atrim=start_sample={spec.greeting_start:d}:end_sample={spec.greeting_samples:d},"
        f"{RESTAMP},"
    )


def _delay(samples: int) -> str:
    # adelay keeps the input pts; re-stamping makes afade/atrim positions plain sample counts.
    return f"adelay=delays={samples:d}S:all=1,{RESTAMP}," if samples > 0 else ""


def audio_bitrate(audio: AudioStream) -> int:
    rate = audio.bit_rate or DEFAULT_AUDIO_BITRATE
    return max(MIN_AUDIO_BITRATE, min(MAX_AUDIO_BITRATE, rate))


def concat_list(plan: HeadPlan, *, sample_rate: int) -> str:
    """The head, then the original's packets from the copy point on, each at its own time.

    The concat demuxer moves a file's packets by (its start in the list - its `inpoint`). The
    copied track was stored starting at 0 (an edit list off the packet grid makes the MP4
    demuxer seek one packet early), so the copy point sits at `copy_point - first_packet` in
    it; the head's `duration` puts the tail where, once the mux takes the head's offset off
    everything, each copied packet is back at its original time.
    """
    start = seconds_arg(plan.copy_point + plan.offset, sample_rate)
    inpoint = seconds_arg(plan.copy_point - plan.first_packet, sample_rate)
    return (
        "ffconcat version 1.0\n"
        f"file {HEAD_NAME}\nduration {start}\n"
        f"file {TAIL_NAME}\ninpoint {inpoint}\n"
    )


def mux_args(
    *,
    upload: Upload,
    work: Path,
    plan: HeadPlan,
    sample_rate: int,
    output: Path,
    video: VideoPlan,
) -> list[str]:
    return [
        "-copyts",
        *upload.input(decode=video.decode),
        "-itsoffset",
        seconds_arg(-plan.offset, sample_rate),
        "-f",
        "concat",
        "-i",
        str(work / LIST_NAME),
        "-map",
        "0:V:0",
        "-map",
        "1:a:0",
        "-c",
        "copy",
        *(video.encode if video.reencoded else []),
        *_output_args(output),
    ]


def full_args(
    *,
    upload: Upload,
    greeting_audio: Path,
    spec: MixSpec,
    bitrate: int,
    output: Path,
    video: VideoPlan,
) -> list[str]:
    """The whole audio track through the mix and the encoder. The graph starts at `spec.start`
    (the lead from `timing.full_lead`, <= 0) and its first sample keeps that time, so the
    priming and the lead go before 0 where the MP4 edit list skips them.
    """
    shift = ["-bsf:a", f"setts=ts=TS{spec.start:+d}"] if spec.start else []
    return [
        "-copyts",
        *upload.input(decode=video.decode),
        "-i",
        str(greeting_audio),
        "-filter_complex",
        mix_graph(spec),
        "-map",
        "0:V:0",
        "-map",
        "[mix]",
        *video.encode,
        "-c:a",
        "aac",
        "-b:a",
        str(bitrate),
        "-ar",
        str(spec.sample_rate),
        *shift,
        *_output_args(output),
    ]


COUNT_NAME = "original-count.u8"


def count_args(upload: Upload, work: Path) -> list[str]:
    """Decode the whole original audio track to one byte per sample frame: its file size is the
    number of samples a player decodes, which the full re-encode must end on."""
    return [
        *upload.input(),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-c:a",
        "pcm_u8",
        "-f",
        "u8",
        str(work / COUNT_NAME),
    ]


def _output_args(output: Path) -> list[str]:
    return [
        "-map_metadata",
        "0",
        "-map_metadata:s:a",
        "0:s:a:0",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(output),
    ]


PCM_ARGS = ["-ar", str(ANALYSIS_RATE), "-c:a", "pcm_f32le", "-f", "f32le"]


def analysis_args(
    *,
    greeting_audio: Path | None,
    upload: Upload,
    seconds: float,
    work: Path,
    copy_tail: bool,
    scan_s: float = 0.0,
) -> list[str]:
    """One ffmpeg run: decode for measurement the greeting (mono, to stdout) and the original's
    greeting slot (its own channels, to a file); with `copy_tail`, also copy the original audio
    track, timestamps untouched, into an MP4 the concat demuxer can seek in, and decode its first
    seconds at their own rate (HEAD_PCM_NAME) for the head the worker mixes.

    The copy is speculative (only the head-reencode path uses it), but it rides along a process
    that runs anyway instead of costing a start-up of its own. Without `greeting_audio` only the
    input is analysed (a batch's shared analysis; its greetings are decoded one by one).
    """
    args = ["-copyts"]
    if greeting_audio is not None:
        args += ["-i", str(greeting_audio)]
    original = 0 if greeting_audio is None else 1  # the input index of the original
    args += upload.input(seconds)
    if copy_tail:
        args += upload.input()
        args += upload.input(seconds + HEAD_PCM_AFTER_S)
    if greeting_audio is not None:
        args += ["-map", "0:a:0", "-ac", "1", *PCM_ARGS, "pipe:1"]
    args += ["-map", f"{original}:a:0", *PCM_ARGS, str(work / ORIGINAL_PCM_NAME)]
    if copy_tail:
        tail = original + 1
        args += ["-map", f"{tail}:a:0", "-c", "copy", "-bsf:a", "setts=ts=TS-STARTPTS"]
        args += ["-f", "mp4", str(work / TAIL_NAME)]
        # The packets where the cut may go, so the cut can avoid window switches.
        args += ["-map", f"{tail}:a:0", "-c", "copy", "-t", f"{scan_s:.6f}", "-f", "adts"]
        args += [str(work / ADTS_NAME)]
        # The samples the head is mixed from (only the head-reencode path uses the copy).
        args += ["-map", f"{tail + 1}:a:0", "-c:a", "pcm_f32le", "-f", "f32le"]
        args += [str(work / HEAD_PCM_NAME)]
    return args
