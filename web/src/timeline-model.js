// The timeline under the video preview, without a DOM: the waveform's peaks per pixel column,
// where the first phrase's pause is, seconds <-> pixels, the marker's keyboard steps and its
// limits. web/src/timeline-view.js draws it; web/tests/timeline.test.mjs checks it.
//
// The limits come from main.js (MAX_GREETING_END, MIN_TAIL_S), passed in, never copied here.

export const STEP_S = 0.05; // ArrowLeft/Right and the "−0.05 s" / "+0.05 s" buttons
export const BIG_STEP_S = 0.5; // Shift+Arrow, PageUp/PageDown
// The lowest end the marker takes: the field refuses 0 ("more than 0"), so the marker never
// writes it.
export const MIN_END_S = STEP_S;

// The pause finder mirrors the worker's (flows/stages/greeting_end.py), so the end the page
// pre-places is where the worker would put it for an empty field: a phrase of at least
// MIN_PHRASE_S, then a pause of at least MIN_PAUSE_S that more speech follows, and the greeting
// ends GUARD_S before that speech (the new greeting may use the pause too). The worker tells
// speech from room tone with webrtcvad, which keeps calling frames speech for ~90 ms after the
// voice stops; a level gate has no such tail, so VAD_HANGOVER_S adds it, and the same figures
// mean the same pauses (0.12 s of webrtcvad pause is about 0.22 s of quiet).
export const FRAME_S = 0.02; // RMS frames
export const MIN_PHRASE_S = 0.24; // greeting_end.py MIN_PHRASE_S
export const MIN_PAUSE_S = 0.12; // greeting_end.py MIN_PAUSE_S
export const GUARD_S = 0.05; // greeting_end.py GUARD_S
export const VAD_HANGOVER_S = 0.1;
// Loud is within SPEECH_RANGE_DB of the speech level (the 90th percentile of the frames: most of
// a recording's first seconds are speech), and clear of the room tone (the 10th percentile) by
// NOISE_MARGIN_DB. A clip whose loud and quiet frames are closer than MIN_CONTRAST_DB (a steady
// tone, music, a noisy room) has no pause a level can find.
export const SPEECH_RANGE_DB = 20;
export const NOISE_MARGIN_DB = 6;
export const MIN_CONTRAST_DB = 12;
const SILENCE_DB = -100; // digital silence, instead of -Infinity

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

/** Seconds to two decimals, as the field and the marker show them (no 1.5500000000000003). */
export function round2(value) {
  return Math.round(value * 100) / 100;
}

/** The field's value as seconds, or null when it is empty or not a number. */
export function parseEnd(text) {
  const trimmed = String(text ?? '').trim();
  if (trimmed === '') return null;
  const value = Number(trimmed);
  return Number.isFinite(value) ? value : null;
}

/** What the marker writes into the field: "1.35", "2", "0.8". */
export function formatEnd(value) {
  return String(round2(value));
}

/** The slider's aria-valuetext: "ends at 1.35 s". */
export function valueText(value) {
  return value === null || !finite(value) ? 'not set' : `ends at ${value.toFixed(2)} s`;
}

/**
 * The latest greeting end the page accepts (main.js checks['greeting-end']): at most `maxEnd`,
 * and `minTail` before the video's end. Without a known duration, `maxEnd`.
 */
export function endLimit(duration, { maxEnd, minTail }) {
  if (!finite(duration) || duration <= 0) return maxEnd;
  return Math.max(0, Math.min(maxEnd, duration - minTail));
}

/** The seconds the timeline shows: the first `maxEnd`, or the whole clip when it is shorter. */
export function windowSeconds(duration, maxEnd) {
  return finite(duration) && duration > 0 ? Math.min(maxEnd, duration) : maxEnd;
}

/** `value` within [min, max] (min wins when they cross), to two decimals. */
export function clampEnd(value, { min = MIN_END_S, max }) {
  return round2(Math.max(min, Math.min(max, value)));
}

/** Where `seconds` is on a lane `width` pixels wide showing `windowS` seconds. */
export function xOfValue(seconds, width, windowS) {
  if (!(windowS > 0)) return 0;
  return (Math.max(0, Math.min(windowS, seconds)) / windowS) * width;
}

/** The seconds at `x` pixels on a lane `width` pixels wide showing `windowS` seconds. */
export function valueAtX(x, width, windowS) {
  if (!(width > 0)) return 0;
  return (Math.max(0, Math.min(width, x)) / width) * windowS;
}

/**
 * The marker's value after a key (ARIA slider keys): ArrowLeft/Down -STEP_S, ArrowRight/Up
 * +STEP_S, with Shift (or PageDown/PageUp) BIG_STEP_S; Home the lowest, End the highest. Null
 * for any other key (the browser keeps it).
 */
export function valueAfterKey(value, key, { shift = false, min = MIN_END_S, max }) {
  const step = shift ? BIG_STEP_S : STEP_S;
  const moves = {
    ArrowLeft: -step, ArrowDown: -step, ArrowRight: step, ArrowUp: step,
    PageDown: -BIG_STEP_S, PageUp: BIG_STEP_S,
  };
  if (key === 'Home') return clampEnd(min, { min, max });
  if (key === 'End') return clampEnd(max, { min, max });
  if (!(key in moves)) return null;
  return clampEnd(value + moves[key], { min, max });
}

/** The channels' first `length` samples averaged into one (what the waveform and finder read). */
export function mixToMono(channels, length) {
  if (!channels.length) return new Float32Array(0);
  const n = Math.max(0, Math.min(length, ...channels.map((c) => c.length)));
  const mono = new Float32Array(n);
  for (const channel of channels) {
    for (let i = 0; i < n; i++) mono[i] += channel[i];
  }
  if (channels.length > 1) for (let i = 0; i < n; i++) mono[i] /= channels.length;
  return mono;
}

/**
 * The waveform's extent per pixel column: `columns` columns over [0, windowS] seconds of
 * `samples` (`sampleRate` Hz); each column's lowest and highest sample. Columns past the end of
 * the samples stay 0. More columns than samples: each column shows the sample under it.
 * @returns {{min: Float32Array, max: Float32Array, peak: number}} peak: the largest |sample|
 */
export function peaksPerColumn(samples, sampleRate, columns, windowS) {
  const count = Math.max(0, Math.floor(columns));
  const min = new Float32Array(count);
  const max = new Float32Array(count);
  const span = windowS * sampleRate; // samples the window holds
  const available = Math.min(samples.length, Math.round(span));
  let peak = 0;
  for (let c = 0; c < count; c++) {
    const from = Math.floor((c * span) / count);
    if (from >= available) break;
    const to = Math.min(Math.max(Math.floor(((c + 1) * span) / count), from + 1), available);
    let lo = samples[from];
    let hi = lo;
    for (let i = from + 1; i < to; i++) {
      const v = samples[i];
      if (v < lo) lo = v;
      else if (v > hi) hi = v;
    }
    min[c] = lo;
    max[c] = hi;
    peak = Math.max(peak, -lo, hi);
  }
  return { min, max, peak };
}

/** RMS level (dBFS, a full-scale sine is -3) of each FRAME_S frame of the first `seconds`. */
export function frameLevels(samples, sampleRate, seconds = Infinity) {
  const size = Math.max(1, Math.round(FRAME_S * sampleRate));
  const n = Math.min(samples.length, Math.floor(seconds * sampleRate));
  const frames = Math.floor(n / size);
  const levels = new Float32Array(frames);
  for (let f = 0; f < frames; f++) {
    let sum = 0;
    for (let i = f * size; i < (f + 1) * size; i++) sum += samples[i] * samples[i];
    const ms = sum / size;
    levels[f] = ms > 0 ? Math.max(SILENCE_DB, 10 * Math.log10(ms)) : SILENCE_DB;
  }
  return { levels, frameS: size / sampleRate };
}

function percentile(values, p) {
  const sorted = Float32Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/**
 * Every place a greeting could end, in seconds: the end of each pause (less GUARD_S) that
 * follows a phrase and comes before more speech. A port of greeting_end.py `phrase_ends_s`: a
 * phrase is a run of speech frames (gaps shorter than MIN_PAUSE_S belong to it) of at least
 * MIN_PHRASE_S.
 * @param {ArrayLike<boolean>} speech  per frame of `frameS` seconds
 */
export function phraseEnds(speech, frameS) {
  const minGap = Math.round(MIN_PAUSE_S / frameS);
  const minPhrase = Math.round(MIN_PHRASE_S / frameS);
  const ends = [];
  let phraseStart = null;
  let silence = 0;
  for (let index = 0; index < speech.length; index++) {
    if (speech[index]) {
      if (phraseStart !== null && silence >= minGap) {
        if (index - silence - phraseStart >= minPhrase) ends.push(Math.max(0, index * frameS - GUARD_S));
        phraseStart = index; // the next phrase (or, after a click, this one) starts
      }
      if (phraseStart === null) phraseStart = index;
      silence = 0;
    } else if (phraseStart !== null) {
      silence += 1;
    }
  }
  return ends;
}

/**
 * Where the greeting ends, found from the first `searchS` seconds of `samples`: the first of
 * `phraseEnds` over frames louder than the floor (with the worker's VAD tail), to two decimals.
 * @returns {{end: number|null, ends: number[], speechDb: number, noiseDb: number,
 *   floorDb: number|null}}  end null: no pause after a first phrase (or no speech to tell apart)
 */
export function findGreetingEnd(samples, sampleRate, { searchS }) {
  const { levels, frameS } = frameLevels(samples, sampleRate, searchS);
  if (!levels.length) return { end: null, ends: [], speechDb: SILENCE_DB, noiseDb: SILENCE_DB, floorDb: null };
  const speechDb = percentile(levels, 0.9);
  const noiseDb = percentile(levels, 0.1);
  if (speechDb - noiseDb < MIN_CONTRAST_DB) return { end: null, ends: [], speechDb, noiseDb, floorDb: null };
  const floorDb = Math.max(speechDb - SPEECH_RANGE_DB, noiseDb + NOISE_MARGIN_DB);
  const hangover = Math.round(VAD_HANGOVER_S / frameS);
  const speech = new Array(levels.length);
  let lastLoud = -Infinity;
  for (let f = 0; f < levels.length; f++) {
    if (levels[f] >= floorDb) lastLoud = f;
    speech[f] = f - lastLoud <= hangover;
  }
  const ends = phraseEnds(speech, frameS).map(round2);
  return { end: ends[0] ?? null, ends, speechDb, noiseDb, floorDb };
}
