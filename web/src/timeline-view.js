// The timeline under the video preview (index.html #timeline): the recording's first seconds as
// a waveform, decoded here with the Web Audio API, and a "greeting ends" marker that is the
// "Greeting ends at (seconds)" field's other face. The field stays the one source of truth: the
// marker writes it as typing would (an `input` event, so main.js checks it and saves the draft
// as it does for typing), and follows it however it changes.
// The numbers (peaks, the pause finder, seconds <-> pixels, keys, limits) are timeline-model.js.

import {
  MIN_END_S, STEP_S, clampEnd, endLimit, findGreetingEnd, formatEnd, mixToMono, parseEnd,
  peaksPerColumn, valueAfterKey, valueAtX, valueText, windowSeconds, xOfValue,
} from './timeline-model.js';

// Reading a file means holding it whole, then its decoded sound: past this, no waveform.
export const MAX_DECODE_BYTES = 100 * 1024 * 1024;
// The worker reads the sound at 16 kHz too (flows/stages/greeting_end.py); plenty for a
// waveform and a level, and a tenth of the memory of 48 kHz stereo.
const DECODE_RATE = 16000;

const formatMb = (bytes) => `${Math.round(bytes / 2 ** 20)} MB`;
const seconds = (v) => `${v.toFixed(2)} s`;

/** Decodes the file's sound (the callback form too, for older Safari). */
function decodeSound(context, data) {
  return new Promise((resolve, reject) => {
    const promise = context.decodeAudioData(data, resolve, reject);
    promise?.catch?.(() => {}); // the callback says it; an unhandled rejection would too
  });
}

/**
 * Wires the timeline to the preview `video` and the greeting end `field`. `maxEnd` and
 * `minTail` are main.js's limits (MAX_GREETING_END, MIN_TAIL_S). Returns `{setFile}`: the
 * chosen video's File (or null once it is dropped). Without the markup, does nothing.
 */
export function mountTimeline({ video, field, maxEnd, minTail, doc = document }) {
  const $ = (id) => doc.getElementById(id);
  const root = $('timeline');
  if (!root || !video || !field) return { setFile() {} };
  const lane = $('timeline-lane');
  const track = $('timeline-track');
  const canvas = $('timeline-wave');
  const marker = $('timeline-marker');
  const note = $('timeline-note');
  const playButton = $('play-greeting');
  const parts = {
    greeting: $('timeline-greeting'),
    after: $('timeline-after'),
    playhead: $('timeline-playhead'),
    scaleEnd: $('timeline-scale-end'),
  };

  let file = null;
  let choice = 0; // which file is being read: a later one wins
  let sound = null; // {samples (mono, the first maxEnd s), sampleRate, duration}
  let pause = null; // the end found in `sound`, seconds, or null
  let peaks = null; // peaksPerColumn for the canvas's width, kept until that changes
  let stopAt = null; // "Play the greeting" is playing up to this second
  let frame = 0;

  const duration = () => (Number.isFinite(video.duration) && video.duration > 0 ? video.duration : sound?.duration ?? Number.NaN);
  const limits = () => ({ min: MIN_END_S, max: endLimit(duration(), { maxEnd, minTail }) });
  const windowS = () => windowSeconds(duration(), maxEnd);
  const fieldEnd = () => parseEnd(field.value);
  const locked = () => field.matches(':disabled'); // the form is being sent
  const say = (text) => { if (note.textContent !== text) note.textContent = text; };

  // ---- the field, however it changes: typed, "Use current time", the fit check's
  // suggestion, a restored draft (main.js sets `.value` from code: no event tells of those,
  // so the setter itself does), a form reset ----
  const native = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(field), 'value')
    ?? Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value');
  Object.defineProperty(field, 'value', {
    configurable: true,
    get() { return native.get.call(this); },
    set(text) {
      native.set.call(this, text);
      render();
    },
  });
  field.addEventListener('input', render);
  field.addEventListener('change', render);
  field.form?.addEventListener('reset', () => setTimeout(render));

  /** Writes the field as typing does: main.js's checks and the draft follow its events. */
  function setEnd(value, { commit = false } = {}) {
    const text = formatEnd(clampEnd(value, limits()));
    if (field.value !== text) {
      field.value = text;
      field.dispatchEvent(new Event('input', { bubbles: true }));
    }
    if (commit) field.dispatchEvent(new Event('change', { bubbles: true }));
  }

  // ---- drawing ----
  function colors() {
    const style = getComputedStyle(root);
    const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    return { wave: read('--muted', '#5b6474'), greeting: read('--accent', '#2457c5'), tick: read('--line', '#dde1e8') };
  }

  function draw() {
    const box = canvas.getBoundingClientRect();
    if (!box.width || !box.height) return; // hidden: the resize observer draws it when shown
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(box.width * ratio);
    const height = Math.round(box.height * ratio);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const ctx = canvas.getContext('2d');
    if (!ctx) return;
    const span = windowS();
    const ink = colors();
    ctx.clearRect(0, 0, width, height);
    // A tick every second.
    ctx.fillStyle = ink.tick;
    for (let s = 1; s < span; s++) ctx.fillRect(Math.round(xOfValue(s, width, span)), 0, Math.max(1, Math.round(ratio)), height);
    if (!sound) return;
    if (!peaks || peaks.width !== width || peaks.span !== span) {
      peaks = { width, span, ...peaksPerColumn(sound.samples, sound.sampleRate, width, span) };
    }
    const middle = height / 2;
    const scale = peaks.peak > 0 ? (middle * 0.92) / peaks.peak : 0;
    const end = fieldEnd();
    const split = end === null ? 0 : Math.round(xOfValue(end, width, span));
    for (let x = 0; x < width; x++) {
      const top = middle - peaks.max[x] * scale;
      const bottom = middle - peaks.min[x] * scale;
      ctx.fillStyle = x < split ? ink.greeting : ink.wave;
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
    // The pause found, dashed, when the marker is elsewhere: a place to drag it to.
    if (pause !== null && end !== null && Math.abs(end - pause) >= 0.01) {
      const x = Math.round(xOfValue(pause, width, span));
      const dash = Math.round(4 * ratio);
      ctx.fillStyle = ink.greeting;
      for (let y = 0; y < height; y += 2 * dash) ctx.fillRect(x, y, Math.max(1, Math.round(ratio)), dash);
    }
    root.dataset.waveform = 'drawn';
  }

  function render() {
    const span = windowS();
    const { min, max } = limits();
    const end = fieldEnd();
    const at = end ?? pause ?? min;
    const fraction = (v) => xOfValue(v, 1, span);
    root.dataset.window = String(span);
    lane.style.setProperty('--at', String(fraction(at)));
    lane.style.setProperty('--limit', String(fraction(max)));
    marker.toggleAttribute('data-unset', end === null);
    marker.setAttribute('aria-valuemin', String(min));
    marker.setAttribute('aria-valuemax', String(Math.max(min, max)));
    // A slider always has a value (ARIA): unset, where the marker is drawn, said "not set".
    marker.setAttribute('aria-valuenow', String(Math.max(min, Math.min(Math.max(min, max), at))));
    marker.setAttribute('aria-valuetext', end === null ? 'not set: found from the recording' : valueText(end));
    parts.greeting.hidden = end === null;
    parts.after.hidden = !(max < span);
    if (parts.scaleEnd) parts.scaleEnd.textContent = `${Number(span.toFixed(1))} s`;
    drawPlayhead();
    draw();
  }

  function drawPlayhead() {
    const t = video.currentTime;
    const span = windowS();
    const shown = Boolean(file) && t > 0 && t <= span;
    parts.playhead.hidden = !shown;
    if (shown) lane.style.setProperty('--playhead', String(xOfValue(t, 1, span)));
  }

  // ---- reading the sound ----
  async function readSound(chosen, token) {
    if (chosen.size > MAX_DECODE_BYTES) {
      root.dataset.waveform = 'none';
      say(`No waveform for this video: it is ${formatMb(chosen.size)}, and this page reads the sound only of videos up to ${formatMb(MAX_DECODE_BYTES)}. Play it, and drag the marker to where the greeting ends.`);
      return;
    }
    const Offline = window.OfflineAudioContext ?? window.webkitOfflineAudioContext;
    if (!Offline) {
      root.dataset.waveform = 'none';
      say('No waveform: this browser cannot read a video\'s sound here. Play it, and drag the marker to where the greeting ends.');
      return;
    }
    say('Reading the sound of your video…');
    let decoded;
    try {
      const data = await chosen.arrayBuffer();
      if (token !== choice) return;
      let context;
      try {
        context = new Offline(1, 1, DECODE_RATE);
      } catch {
        context = new Offline(1, 1, 44100); // older Safari takes 22.05 kHz and up only
      }
      decoded = await decodeSound(context, data);
    } catch (error) {
      if (token !== choice) return;
      root.dataset.waveform = 'none';
      const why = error?.message ? ` (${error.message})` : '';
      say(`No waveform: this browser could not read the sound of this video${why}. Play it, and drag the marker to where the greeting ends.`);
      return;
    }
    if (token !== choice) return;
    const length = Math.min(decoded.length, Math.ceil(maxEnd * decoded.sampleRate));
    const channels = Array.from({ length: decoded.numberOfChannels }, (_, i) => decoded.getChannelData(i));
    sound = { samples: mixToMono(channels, length), sampleRate: decoded.sampleRate, duration: decoded.duration };
    peaks = null;
    const found = findGreetingEnd(sound.samples, sound.sampleRate, { searchS: maxEnd });
    const usable = found.ends.filter((end) => end >= MIN_END_S && end <= limits().max);
    pause = usable[0] ?? null;
    root.dataset.pause = pause === null ? 'none' : String(pause);
    if (pause === null) {
      say(`No clear pause after the first words in the first ${Number(windowS().toFixed(1))} s: drag the marker to where the greeting ends.`);
    } else if (field.value.trim() === '' && document.activeElement !== field) {
      // Pre-placed: the rep may move it. Never while the rep is in the field: an emptied field
      // being typed in reads '' too, and the found end would be typed into ("0.87" + "2.3"
      // made "0.8723" in the browser test).
      setEnd(pause, { commit: true });
      say(`Found a pause at ${seconds(pause)}: the greeting ends there. Move the marker if it ends elsewhere.`);
    } else {
      // The rep's own end (or the form's default) stays; where the pause is, is worth knowing.
      say(`The first pause in your recording is at ${seconds(pause)} (the dashed line).`);
    }
    render();
  }

  function setFile(chosen) {
    choice += 1;
    stopGreeting();
    file = chosen ?? null;
    sound = null;
    peaks = null;
    pause = null;
    delete root.dataset.pause;
    say('');
    root.dataset.waveform = file ? 'loading' : 'none';
    render();
    if (file) readSound(file, choice);
  }

  // ---- dragging: the marker, or anywhere on the track (the marker jumps there) ----
  let drag = null; // {pointerId, offset}
  function endFromPointer(clientX) {
    const box = lane.getBoundingClientRect();
    return valueAtX(clientX - box.left, box.width, windowS());
  }
  track.addEventListener('pointerdown', (event) => {
    if (locked() || !file || (event.pointerType === 'mouse' && event.button !== 0)) return;
    event.preventDefault(); // no text selection, no native drag; focus is given below
    marker.focus({ preventScroll: true });
    const onMarker = marker.contains(event.target);
    const box = lane.getBoundingClientRect();
    const current = fieldEnd() ?? pause ?? MIN_END_S;
    const markerX = box.left + xOfValue(current, box.width, windowS());
    drag = { pointerId: event.pointerId, offset: onMarker ? event.clientX - markerX : 0 };
    track.setPointerCapture?.(event.pointerId);
    root.dataset.dragging = 'true';
    if (!onMarker) setEnd(endFromPointer(event.clientX));
  });
  track.addEventListener('pointermove', (event) => {
    if (drag?.pointerId !== event.pointerId) return;
    setEnd(endFromPointer(event.clientX - drag.offset));
  });
  const endDrag = (event) => {
    if (drag?.pointerId !== event.pointerId) return;
    drag = null;
    delete root.dataset.dragging;
    field.dispatchEvent(new Event('change', { bubbles: true }));
  };
  track.addEventListener('pointerup', endDrag);
  track.addEventListener('pointercancel', endDrag);
  track.addEventListener('lostpointercapture', endDrag);

  // ---- keys, and the two nudge buttons ----
  marker.addEventListener('keydown', (event) => {
    if (locked() || event.altKey || event.ctrlKey || event.metaKey) return;
    const next = valueAfterKey(fieldEnd() ?? pause ?? MIN_END_S, event.key, { shift: event.shiftKey, ...limits() });
    if (next === null) return;
    event.preventDefault();
    setEnd(next, { commit: true });
  });
  for (const [id, step] of [['timeline-earlier', -STEP_S], ['timeline-later', STEP_S]]) {
    $(id)?.addEventListener('click', () => setEnd((fieldEnd() ?? pause ?? MIN_END_S) + step, { commit: true }));
  }

  // ---- "Play the greeting": from 0 to the marker, then stop there ----
  function stopGreeting() {
    stopAt = null;
    cancelAnimationFrame(frame);
    delete root.dataset.playing;
  }
  /** Stops "Play the greeting" once the video reaches the marker; true if it did. */
  function stopAtMarker() {
    if (stopAt === null || video.seeking || video.currentTime < stopAt) return false;
    const end = stopAt;
    stopGreeting();
    video.pause();
    video.currentTime = end; // the playhead rests on the marker
    return true;
  }
  function watchGreeting() {
    if (stopAt === null || stopAtMarker()) return;
    drawPlayhead();
    frame = requestAnimationFrame(watchGreeting);
  }
  playButton.addEventListener('click', () => {
    const end = fieldEnd();
    if (!file) return;
    if (end === null || end <= 0) {
      say('Set where the greeting ends first: drag the marker, or type the seconds.');
      return;
    }
    stopGreeting();
    stopAt = Math.min(end, duration() || end);
    root.dataset.playing = 'true';
    video.currentTime = 0;
    const started = video.play();
    started?.catch?.((error) => {
      if (stopAt === null) return;
      stopGreeting();
      say(`The video could not play here (${error.message}). Press the video's own play button instead.`);
    });
    frame = requestAnimationFrame(watchGreeting);
  });
  // Paused by the rep (its own controls) or at the end: this playing is over. A pause event
  // still queued from a previous stop comes while playing again, and is let be.
  video.addEventListener('pause', () => { if (stopAt !== null && video.paused) stopGreeting(); });
  video.addEventListener('ended', stopGreeting);
  // Where the video is, on the timeline; a jump far past the marker ends "Play the greeting".
  // (timeupdate as well as animation frames: a tab in the background gets no frames.)
  video.addEventListener('timeupdate', () => {
    if (stopAt !== null && !video.seeking && video.currentTime > stopAt + 0.5) stopGreeting();
    else stopAtMarker();
    drawPlayhead();
  });
  video.addEventListener('seeked', drawPlayhead);
  for (const type of ['loadedmetadata', 'durationchange']) video.addEventListener(type, render);

  // ---- redrawn at any width, and in the other colour scheme ----
  if (typeof ResizeObserver === 'function') new ResizeObserver(() => draw()).observe(lane);
  window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => draw());

  render();
  return { setFile };
}
