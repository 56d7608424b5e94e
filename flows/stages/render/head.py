"""The head of a render (the greeting mixed over the original's first seconds, AAC-encoded) made
in the worker's process with PyAV, instead of an ffmpeg process per job.

Nothing here reads the upload. The original's head comes as raw float samples that the
sandboxed analysis decoded once for the whole batch (`ffmpeg_args.HEAD_PCM_NAME`); the greeting
is the voice's file. The mix is `ffmpeg_args.mix_graph`, the very graph the full re-encode hands
the ffmpeg command, built node by node into libavfilter; the packets are moved and cut as the
command's `setts` and `noise=drop` filters did, and written as NUT for the mux's concat list.

The ffmpeg process this replaces cost a job about 0.15 CPU s (media per job went from 0.272 to
0.123 side by side, docs/benchmarks.md): starting Debian's ffmpeg (215 shared libraries), decoding
the upload's head again, mixing and encoding. Here the mix takes about 6 ms and the AAC encode,
the bulk of what is left, about 13 (`HEAD_CODER`; 50 with the encoder's default search).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from flows.media import FfmpegError, open_speech
from flows.stages.render.ffmpeg_args import MixSpec, mix_graph
from flows.stages.render.timing import ENCODER_FRAME, ENCODER_PRIMING, HeadPlan

# The graph's two sources, as `mix_graph` names them here.
ORIGINAL = "original_pcm"
GREETING = "greeting_file"
MIX = "mix"
# Samples pushed into the graph per frame of the original's head.
PUSH_SAMPLES = 4096
# The head is encoded with the AAC encoder's `fast` quantizer search at 1.5 times the original's
# bit rate instead of the default `twoloop` at 1x: on the bench clip's 1.6 s stereo opening 13 ms
# of CPU against 34-45 ms, and 32.7-35.0 dB of signal over codec noise against 30.0-31.0
# (`fast` at 1x gave 24.3-24.6 dB and failed the render suite's seam check, which asks 25). The
# head is two seconds or so: the higher rate costs a video about 16 KB.
HEAD_CODER = "fast"
HEAD_BITRATE_FACTOR = 1.5
# libavcodec's AAC encoder takes at most 6144 bits per channel per 1024-sample frame.
AAC_MAX_BITS_PER_CHANNEL_FRAME = 6144


def head_bitrate(bitrate: int, *, channels: int, sample_rate: int) -> int:
    """The head's bit rate for an original at `bitrate`: HEAD_BITRATE_FACTOR times it, within
    what the encoder takes for these channels at this rate."""
    most = AAC_MAX_BITS_PER_CHANNEL_FRAME * channels * sample_rate // ENCODER_FRAME
    return min(round(bitrate * HEAD_BITRATE_FACTOR), most)


_LABEL = re.compile(r"\[([^\]]+)\]")


@dataclass(frozen=True)
class Chain:
    """One `;`-separated part of a filter graph: its input labels, filters and output labels."""

    inputs: list[str]
    filters: list[tuple[str, str | None]]  # name, arguments
    outputs: list[str]


def parse_graph(text: str) -> list[Chain]:
    """A filter graph as `mix_graph` writes it: labels, then filters split by `,`, then labels.

    Only for graphs this code built from numbers (no quoting, no escaped `,` or `;`): anything
    else is refused rather than guessed at.
    """
    chains = []
    for part in text.split(";"):
        rest = part.strip()
        inputs = []
        while rest.startswith("["):
            label, rest = _label(rest)
            inputs.append(label)
        outputs: list[str] = []
        while rest.endswith("]"):
            start = rest.rindex("[")
            outputs.insert(0, rest[start + 1 : -1])
            rest = rest[:start]
        if not rest or "[" in rest or "'" in rest or "\\" in rest:
            raise ValueError(f"not a filter chain this code writes: {part!r}")
        filters = []
        for item in rest.split(","):
            name, _, args = item.partition("=")
            filters.append((name, args or None))
        chains.append(Chain(inputs, filters, outputs))
    return chains


def _label(text: str) -> tuple[str, str]:
    match = _LABEL.match(text)
    if match is None:
        raise ValueError(f"unterminated label in {text!r}")
    return match.group(1), text[match.end() :]


def encode_head(
    *,
    original: np.ndarray,
    greeting_audio: Path,
    spec: MixSpec,
    plan: HeadPlan,
    bitrate: int,
    output: Path,
) -> None:
    """Mix `spec` over `original` (the original's samples from its first decoded one,
    interleaved float32, `spec.channels` wide) and the greeting, encode the mix to AAC and write
    its packets up to the copy point as NUT, `plan.offset` samples late (NUT refuses negative
    timestamps; the mux moves them back). Errors are `FfmpegError`s, as from the command."""
    import av  # here, not at the top: of what imports this module, only the worker needs it

    stop = plan.copy_point + plan.offset
    try:
        with av.open(str(output), "w", format="nut") as out:
            stream = out.add_stream(
                "aac",
                rate=spec.sample_rate,
                layout=spec.layout,
                options={"aac_coder": HEAD_CODER},
            )
            codec: Any = stream.codec_context
            codec.bit_rate = head_bitrate(
                bitrate, channels=spec.channels, sample_rate=spec.sample_rate
            )
            codec.format = "fltp"
            codec.time_base = Fraction(1, spec.sample_rate)
            stream.time_base = Fraction(1, spec.sample_rate)
            samples = 0
            for frame in mixed(original, greeting_audio, spec):
                # Counted, not the graph's stamps: the encoder sees one sample after another.
                frame.pts = samples
                frame.time_base = codec.time_base
                samples += frame.samples
                _mux(out, stream, stream.encode(frame), stop)
            _mux(out, stream, stream.encode(None), stop)
    except av.FFmpegError as exc:
        raise FfmpegError(["pyav", "head"], 1, str(exc)) from exc


def mixed(original: np.ndarray, greeting_audio: Path, spec: MixSpec) -> Iterator[Any]:
    """The frames of `mix_graph(spec)` (ENCODER_FRAME samples each, but the last) over the
    original's samples and the greeting's file, from libavfilter in this process."""
    with open_speech(greeting_audio) as speech:
        greeting = speech.streams.audio[0]
        # The graph is held here: its nodes do not keep it alive, and a freed graph crashes.
        graph, sources, sink = _graph(spec, greeting)
        _push_original(sources[ORIGINAL], original, spec)
        for frame in speech.decode(greeting):
            sources[GREETING].push(frame)
        sources[GREETING].push(None)
        yield from _pulled(sink)
        del graph


def _mux(out: Any, stream: Any, packets: list[Any], stop: int) -> None:
    """The command's `setts=ts=TS+ENCODER_PRIMING,noise=drop=gte(pts,stop)`: the priming packet
    at 0, and nothing from the copy point on (those packets only fed the encoder the signal the
    first copied packet overlaps)."""
    for packet in packets:
        packet.pts += ENCODER_PRIMING
        packet.dts += ENCODER_PRIMING
        if packet.pts >= stop:
            continue
        packet.stream = stream
        out.mux(packet)


def _graph(spec: MixSpec, greeting: Any) -> tuple[Any, dict[str, Any], Any]:
    """`mix_graph(spec)` built node by node: the graph, its two sources and its sink."""
    import av.filter

    graph = av.filter.Graph()
    sources = {
        ORIGINAL: graph.add_abuffer(
            sample_rate=spec.sample_rate,
            format="flt",
            layout=spec.layout,
            time_base=Fraction(1, spec.sample_rate),
        ),
        GREETING: graph.add_abuffer(template=greeting),
    }
    produced: dict[str, tuple[Any, int]] = {name: (node, 0) for name, node in sources.items()}
    wanted: dict[str, tuple[Any, int]] = {}
    for chain in parse_graph(mix_graph(spec, original=ORIGINAL, greeting=GREETING)):
        nodes = [graph.add(name, args) for name, args in chain.filters]
        for first, second in itertools.pairwise(nodes):
            first.link_to(second)
        for pad, label in enumerate(chain.inputs):
            wanted[label] = (nodes[0], pad)
        for pad, label in enumerate(chain.outputs):
            produced[label] = (nodes[-1], pad)
    sink = graph.add("abuffersink")
    wanted[MIX] = (sink, 0)
    if set(wanted) != set(produced):
        raise ValueError(f"graph labels do not match: {sorted(wanted)} / {sorted(produced)}")
    for label, (node, pad) in wanted.items():
        source, out_pad = produced[label]
        source.link_to(node, out_pad, pad)
    graph.configure()
    # The encoder takes whole frames of its size, as the command's sink hands them.
    graph.set_audio_frame_size(ENCODER_FRAME)
    return graph, sources, sink


def _push_original(source: Any, original: np.ndarray, spec: MixSpec) -> None:
    import av

    samples = len(original) // spec.channels
    frames = original[: samples * spec.channels].reshape(1, -1)
    for start in range(0, samples, PUSH_SAMPLES):
        end = min(samples, start + PUSH_SAMPLES)
        chunk = np.ascontiguousarray(frames[:, start * spec.channels : end * spec.channels])
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout=spec.layout)
        frame.sample_rate = spec.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, spec.sample_rate)
        source.push(frame)
    source.push(None)


def _pulled(sink: Any) -> Iterator[Any]:
    import av

    while True:
        try:
            yield sink.pull()
        except (av.BlockingIOError, av.EOFError):
            return
