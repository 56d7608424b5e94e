// The timeline under the video preview (web/src/timeline-model.js), without a browser: the
// waveform's peaks, the pause finder on synthesized recordings (tones for speech, room tone at
// -50 dBFS, 44.1 and 48 kHz), seconds <-> pixels, the marker's keys and its limits.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BIG_STEP_S, FRAME_S, GUARD_S, MIN_END_S, STEP_S, clampEnd, endLimit, findGreetingEnd, formatEnd,
  frameLevels, mixToMono, parseEnd, peaksPerColumn, phraseEnds, round2, valueAfterKey, valueAtX,
  valueText, windowSeconds, xOfValue,
} from '../src/timeline-model.js';

// main.js's limits (MAX_GREETING_END, MIN_TAIL_S), as the page passes them.
const LIMITS = { maxEnd: 10, minTail: 1 };

/** A seeded generator (mulberry32), so every run hears the same room. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const dbToRms = (db) => 10 ** (db / 20);

/**
 * A recording: `parts` in order, each [seconds, 'tone' | 'quiet'], tones (the voice) at
 * `toneDb` RMS over room tone (Gaussian noise) at `roomDb` RMS, or digital silence for null.
 */
function recording(parts, { rate, toneDb = -15, roomDb = -50, frequency = 220, seed = 7 }) {
  const total = parts.reduce((sum, [seconds]) => sum + Math.round(seconds * rate), 0);
  const samples = new Float32Array(total);
  const next = random(seed);
  const amplitude = dbToRms(toneDb) * Math.SQRT2; // a sine's peak is sqrt(2) its RMS
  let at = 0;
  for (const [seconds, kind] of parts) {
    const n = Math.round(seconds * rate);
    for (let i = 0; i < n; i++) {
      if (kind === 'tone') samples[at + i] = amplitude * Math.sin((2 * Math.PI * frequency * (at + i)) / rate);
    }
    at += n;
  }
  if (roomDb !== null) {
    const sigma = dbToRms(roomDb);
    for (let i = 0; i < total; i++) {
      // Box-Muller: Gaussian noise of RMS sigma.
      const u = 1 - next();
      samples[i] += sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    }
  }
  return samples;
}

const RATES = [44100, 48000];
const near = (actual, expected, tolerance, message) => assert.ok(
  Math.abs(actual - expected) <= tolerance,
  `${message ?? ''} ${actual} is not within ${tolerance} of ${expected}`,
);

test('the field\'s text, the marker\'s numbers and its spoken value', () => {
  assert.equal(parseEnd(''), null);
  assert.equal(parseEnd('   '), null);
  assert.equal(parseEnd('abc'), null);
  assert.equal(parseEnd(' 1.35 '), 1.35);
  assert.equal(round2(1.5 + 0.05), 1.55);
  assert.equal(round2(0.1 + 0.2), 0.3);
  assert.equal(formatEnd(2), '2');
  assert.equal(formatEnd(1.349999), '1.35');
  assert.equal(formatEnd(0.8), '0.8');
  assert.equal(valueText(1.35), 'ends at 1.35 s');
  assert.equal(valueText(2), 'ends at 2.00 s');
  assert.equal(valueText(null), 'not set');
});

test('the marker goes no later than 10 s and 1 s before the video\'s end, no earlier than one step', () => {
  assert.equal(endLimit(8, LIMITS), 7);
  assert.equal(endLimit(30, LIMITS), 10);
  assert.equal(endLimit(10.5, LIMITS), 9.5);
  assert.equal(endLimit(Number.NaN, LIMITS), 10, 'no duration yet: the page\'s own limit');
  assert.equal(endLimit(Infinity, LIMITS), 10, 'a WebM without a duration in its header');
  assert.equal(endLimit(0.5, LIMITS), 0, 'never below 0');
  assert.equal(clampEnd(12, { max: 7 }), 7);
  assert.equal(clampEnd(-1, { max: 7 }), MIN_END_S);
  assert.equal(clampEnd(0, { max: 7 }), 0.05, 'the field refuses 0: the marker never writes it');
  assert.equal(clampEnd(2.0049, { max: 7 }), 2);
  assert.equal(clampEnd(3, { min: 0.05, max: 0 }), 0.05, 'a video too short for any greeting');
});

test('the timeline shows the first 10 s, or the whole clip when it is shorter', () => {
  assert.equal(windowSeconds(8, 10), 8);
  assert.equal(windowSeconds(600, 10), 10);
  assert.equal(windowSeconds(Number.NaN, 10), 10);
  assert.equal(windowSeconds(Infinity, 10), 10);
});

test('seconds and pixels map both ways, within the lane', () => {
  assert.equal(xOfValue(2, 500, 10), 100);
  assert.equal(xOfValue(0, 500, 10), 0);
  assert.equal(xOfValue(12, 500, 10), 500, 'past the window: at its right edge');
  assert.equal(xOfValue(-1, 500, 10), 0);
  assert.equal(valueAtX(100, 500, 10), 2);
  assert.equal(valueAtX(-40, 500, 10), 0);
  assert.equal(valueAtX(900, 500, 8), 8);
  assert.equal(valueAtX(10, 0, 10), 0, 'a lane not laid out yet');
  for (const [width, windowS] of [[312, 8], [1000, 10], [287, 3.4]]) {
    for (const seconds of [0.05, 0.87, 1.35, 2, windowS - 0.01]) {
      near(valueAtX(xOfValue(seconds, width, windowS), width, windowS), seconds, 1e-9, `${width} px, ${windowS} s:`);
    }
  }
});

test('keys move the marker as a slider\'s do, within its limits', () => {
  const limits = { min: MIN_END_S, max: 7 };
  assert.equal(valueAfterKey(1.5, 'ArrowRight', limits), 1.55);
  assert.equal(valueAfterKey(1.5, 'ArrowUp', limits), 1.55);
  assert.equal(valueAfterKey(1.5, 'ArrowLeft', limits), 1.45);
  assert.equal(valueAfterKey(1.5, 'ArrowDown', limits), 1.45);
  assert.equal(valueAfterKey(1.5, 'ArrowRight', { ...limits, shift: true }), 2);
  assert.equal(valueAfterKey(1.5, 'ArrowLeft', { ...limits, shift: true }), 1);
  assert.equal(valueAfterKey(1.5, 'PageUp', limits), 1.5 + BIG_STEP_S);
  assert.equal(valueAfterKey(1.5, 'PageDown', limits), 1.5 - BIG_STEP_S);
  assert.equal(valueAfterKey(1.5, 'Home', limits), MIN_END_S);
  assert.equal(valueAfterKey(1.5, 'End', limits), 7);
  assert.equal(valueAfterKey(6.98, 'ArrowRight', limits), 7, 'stops at the limit');
  assert.equal(valueAfterKey(0.05, 'ArrowLeft', limits), 0.05, 'stops at one step');
  assert.equal(valueAfterKey(0.3, 'ArrowLeft', { ...limits, shift: true }), 0.05);
  assert.equal(valueAfterKey(1.5, 'Enter', limits), null, 'other keys are the browser\'s');
  assert.equal(valueAfterKey(1.5, 'Tab', limits), null);
  // Twice ArrowRight is +0.10 exactly, as the field shows it.
  assert.equal(valueAfterKey(valueAfterKey(2.03, 'ArrowRight', limits), 'ArrowRight', limits), 2.13);
  assert.equal(STEP_S, 0.05);
});

test('the channels are averaged into one', () => {
  const left = Float32Array.from([1, 0.5, -1, 0.25]);
  const right = Float32Array.from([0, 0.5, 1, 0.75]);
  assert.deepEqual([...mixToMono([left, right], 10)], [0.5, 0.5, 0, 0.5]);
  assert.deepEqual([...mixToMono([left, right], 2)], [0.5, 0.5]);
  assert.deepEqual([...mixToMono([left], 3)], [1, 0.5, -1]);
  assert.equal(mixToMono([], 5).length, 0);
});

test('peaks per pixel column: each column\'s lowest and highest sample', () => {
  const rate = 1000;
  const samples = new Float32Array(2 * rate); // 2 s
  samples[250] = 0.8; // column 1 of 8 over 2 s (0.25 s each)
  samples[260] = -0.5;
  samples[1999] = -0.9; // the last column
  const { min, max, peak } = peaksPerColumn(samples, rate, 8, 2);
  assert.equal(min.length, 8);
  assert.deepEqual([...max].map(round2), [0, 0.8, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...min].map(round2), [0, -0.5, 0, 0, 0, 0, 0, -0.9]);
  assert.equal(round2(peak), 0.9);

  // A clip shorter than the window: the columns after its end stay empty.
  const short = peaksPerColumn(Float32Array.from({ length: rate }, () => 0.5), rate, 10, 2);
  assert.deepEqual([...short.max].map(round2), [0.5, 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0, 0]);

  // More columns than samples: each column shows the sample under it.
  const few = peaksPerColumn(Float32Array.from([0.1, -0.2, 0.3, -0.4]), 4, 8, 1);
  assert.deepEqual([...few.max].map(round2), [0.1, 0.1, -0.2, -0.2, 0.3, 0.3, -0.4, -0.4]);

  // A real width over 10 s at 48 kHz: every sample is in exactly one column.
  const tone = recording([[10, 'tone']], { rate: 48000, roomDb: null });
  const wide = peaksPerColumn(tone, 48000, 733, 10);
  assert.equal(wide.max.length, 733);
  assert.ok([...wide.max].every((v) => v > 0.2), 'every column of a 220 Hz tone holds a crest');
  near(wide.peak, dbToRms(-15) * Math.SQRT2, 1e-3);
  assert.equal(peaksPerColumn(tone, 48000, 0, 10).max.length, 0, 'a canvas not laid out yet');
});

test('levels are RMS per 20 ms frame, in dBFS', () => {
  for (const rate of RATES) {
    const { levels, frameS } = frameLevels(recording([[1, 'tone']], { rate, roomDb: null, toneDb: -20 }), rate);
    assert.equal(frameS, FRAME_S);
    assert.equal(levels.length, 50);
    for (const level of levels) near(level, -20, 0.2, `${rate} Hz:`);
    const silence = frameLevels(new Float32Array(rate), rate);
    assert.ok([...silence.levels].every((v) => v === -100), 'digital silence is -100, not -Infinity');
    assert.equal(frameLevels(new Float32Array(rate), rate, 0.5).levels.length, 25, 'only the first seconds asked');
  }
});

for (const rate of RATES) {
  test(`the first phrase's pause is found, as the worker finds it (${rate} Hz)`, () => {
    // "Hey John," (0.8 s), a pause of 0.3 s, the pitch. The greeting ends GUARD_S before the
    // pitch starts (greeting_end.py), so the new greeting may use the pause too.
    const clip = recording([[0.1, 'quiet'], [0.8, 'tone'], [0.3, 'quiet'], [2, 'tone'], [0.4, 'quiet'], [1, 'tone']], { rate });
    const found = findGreetingEnd(clip, rate, { searchS: 10 });
    near(found.end, 1.2 - GUARD_S, 0.021, 'the end:');
    assert.equal(found.ends.length, 2, `a pause after each phrase followed by speech: ${found.ends}`);
    near(found.ends[1], 3.6 - GUARD_S, 0.021, 'the second:');
    near(found.speechDb, -15, 0.5);
    near(found.noiseDb, -50, 1.5);
    assert.ok(found.floorDb > -40 && found.floorDb < -25, `floor ${found.floorDb}`);
    assert.equal(found.end, round2(found.end), 'two decimals, as the field shows it');
  });

  test(`a quiet voice is told from the room by its own level (${rate} Hz)`, () => {
    const clip = recording([[0.6, 'tone'], [0.35, 'quiet'], [1.5, 'tone']], { rate, toneDb: -32 });
    near(findGreetingEnd(clip, rate, { searchS: 10 }).end, 0.95 - GUARD_S, 0.021);
    // A room louder than the usual one (-40 dBFS) under an ordinary voice.
    const noisy = recording([[0.6, 'tone'], [0.35, 'quiet'], [1.5, 'tone']], { rate, roomDb: -40 });
    near(findGreetingEnd(noisy, rate, { searchS: 10 }).end, 0.95 - GUARD_S, 0.021);
    // Digital silence between the words (no room tone at all).
    const dry = recording([[0.6, 'tone'], [0.35, 'quiet'], [1.5, 'tone']], { rate, roomDb: null });
    near(findGreetingEnd(dry, rate, { searchS: 10 }).end, 0.95 - GUARD_S, 0.021);
  });

  test(`gaps within a phrase, clicks and breaths do not end a greeting (${rate} Hz)`, () => {
    // A 0.15 s gap between words: shorter than a pause (webrtcvad would hear it through).
    const gap = recording([[0.4, 'tone'], [0.15, 'quiet'], [0.5, 'tone'], [0.3, 'quiet'], [1, 'tone']], { rate });
    near(findGreetingEnd(gap, rate, { searchS: 10 }).end, 1.35 - GUARD_S, 0.021);
    // A click (0.06 s) before the phrase is not "Hey there".
    const click = recording([[0.06, 'tone'], [0.4, 'quiet'], [0.7, 'tone'], [0.3, 'quiet'], [1, 'tone']], { rate });
    near(findGreetingEnd(click, rate, { searchS: 10 }).end, 1.46 - GUARD_S, 0.021);
  });

  test(`no pause, no next phrase, no speech: nothing is found (${rate} Hz)`, () => {
    const search = { searchS: 10 };
    assert.equal(findGreetingEnd(recording([[4, 'tone']], { rate }), rate, search).end, null, 'a steady tone');
    assert.equal(findGreetingEnd(recording([[4, 'quiet']], { rate }), rate, search).end, null, 'room tone only');
    assert.equal(findGreetingEnd(new Float32Array(rate * 2), rate, search).end, null, 'digital silence');
    assert.equal(findGreetingEnd(new Float32Array(0), rate, search).end, null, 'no samples');
    assert.equal(findGreetingEnd(recording([[1, 'tone'], [3, 'quiet']], { rate }), rate, search).end, null, 'nothing said after the pause');
    // A pause of 0.15 s of quiet is the worker's VAD's 0.05 s: not a pause.
    assert.equal(findGreetingEnd(recording([[0.8, 'tone'], [0.15, 'quiet'], [2, 'tone']], { rate }), rate, search).end, null);
    // Only the first `searchS` seconds are read.
    const late = recording([[1.5, 'quiet'], [9, 'tone'], [0.4, 'quiet'], [1, 'tone']], { rate });
    assert.equal(findGreetingEnd(late, rate, search).end, null, 'the pause is after 10 s');
    near(findGreetingEnd(late, rate, { searchS: 12 }).end, 10.9 - GUARD_S, 0.021);
  });
}

test('phraseEnds gives the worker\'s answers on its own cases (tests/unit/test_greeting_end.py)', () => {
  const frameS = 0.03; // webrtcvad's frames there
  const S = true;
  const Q = false;
  const frames = (...runs) => runs.flatMap(([value, n]) => Array(n).fill(value));
  near(phraseEnds(frames([Q, 3], [S, 20], [Q, 10], [S, 30]), frameS)[0], 33 * frameS - 0.05, 1e-9);
  near(phraseEnds(frames([S, 10], [Q, 2], [S, 10], [Q, 8], [S, 10]), frameS)[0], 30 * frameS - 0.05, 1e-9);
  near(phraseEnds(frames([S, 2], [Q, 10], [S, 12], [Q, 6], [S, 5]), frameS)[0], 30 * frameS - 0.05, 1e-9);
  assert.deepEqual(phraseEnds(frames([S, 130]), frameS), []);
  assert.deepEqual(phraseEnds(frames([S, 20], [Q, 100]), frameS), []);
  assert.deepEqual(phraseEnds(frames([Q, 130]), frameS), []);
});
