"""The `generating-video` stage: put the synthesized greeting over the first seconds of the video.

The video stream is copied whenever MP4 can hold its codec (H.264, HEVC, VP9, AV1, MPEG-4);
VP8, which Chrome's MediaRecorder writes by default, is re-encoded to H.264 at its own size and
frame times (`ffmpeg_args.video_plan`), the audio handled as for any other input. For AAC audio
in MP4/MOV (what phones record) only the head of the audio is re-encoded and every later packet
is copied with its original timestamp, so the cost tracks the greeting, not the video:

    presentation samples  s0 ........ 0 ...... E-X .. E ........ C ..... C+2F
    head (re-encoded)     [lead-in]  [greeting][fade][original  ]
    tail (copied)                                               [original packets, same pts ...]

E is the end of the greeting slot, X the crossfade, C the copy point: the first boundary of the
original's packets at least two frames (F samples each) past E where the original uses long
windows. The head is encoded from s0 (C minus a whole number of frames, s0 <= 0) so its packets
land on the original's packet grid, and it is fed original audio up to C + 2F so its last packet,
which the first copied packet overlaps in the MDCT, encodes the same signal; the head's packets
from C on are dropped. AAC encoders prepend priming samples; appending copied packets after the
head shifts everything after it by that delay, so each side keeps explicit timestamps instead
(concat demuxer offsets, `-copyts`).

Any other audio (Opus, MP3, WebM/MKV, a slot too near the end) is re-encoded whole. There the
encoder's padding is put before time 0 too (the lead-in of `timing.full_lead`), so the track
keeps the original's sample count instead of growing to a whole last frame.

- timing: how a greeting fits its slot (`fit_slot`: a greeting longer than the slot first loses
  its own leading silence, then grows the slot into the original's pause after
  greetingEndSecond up to the next sound, and only then plays faster, up to max_tempo), copy
  point, lead-in and seam choice, in samples (pure).
- loudness: levels, speech end and the gain matching the greeting to the original, and the
  original's quietest stretch of room tone (pure). Where the recording has a noise floor, that
  stretch loops (forwards, then backwards) under the whole slot, so the slot never drops to
  digital silence; a recording without one keeps silent gaps.
- ffmpeg_args: the ffmpeg command lines, filter graph and concat list (pure).
- stage: `render_video` (the stage's step), and `render_greeting` and `analyze_input`, which probe,
  measure and run ffmpeg.
"""

from flows.stages.render.stage import (
    FitMeasure,
    InputAnalysis,
    RenderReport,
    analyze_input,
    check_output_duration,
    measure_fit,
    render_greeting,
    render_video,
)

__all__ = [
    "FitMeasure",
    "InputAnalysis",
    "RenderReport",
    "analyze_input",
    "check_output_duration",
    "measure_fit",
    "render_greeting",
    "render_video",
]
