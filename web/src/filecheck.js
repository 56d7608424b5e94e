// Whether a chosen file can be the rep's video, decided the moment it is chosen: plain functions,
// no DOM (web/src/video-probe.js asks the browser; main.js shows the answer next to the field).
// Two steps: what the file says about itself (name, type, size), then what this browser made of
// it (its metadata, or an error). The limits are the backend's, so a file refused here would be
// refused after its upload anyway: triggers/uploads.py and storage.rules take at most 500 MB of
// a video/* type, flows/settings.py `max_input_seconds` is 600 s, and flows/stages/validate.py
// wants the greeting and at least 1 s after it.

export const MAX_VIDEO_BYTES = 500 * 1024 * 1024;
export const MAX_VIDEO_SECONDS = 600;
export const MIN_VIDEO_SECONDS = 1; // validate.py MIN_TAIL_S: the greeting, then at least this
export const PROBE_TIMEOUT_MS = 20_000;

// The containers the worker opens (MP4/MOV, WebM/Matroska), by extension, and the type an
// upload of each declares when the browser gave the file none (or a generic one).
export const VIDEO_TYPES = {
  '.mp4': 'video/mp4',
  '.m4v': 'video/x-m4v',
  '.mov': 'video/quicktime',
  '.webm': 'video/webm',
  '.mkv': 'video/x-matroska',
};
export const VIDEO_EXTENSIONS = Object.keys(VIDEO_TYPES);

const EXPORT_AGAIN = 'Export it again as MP4 or WebM.';

/** ".mp4" for "Intro.MP4", '' when the name has no extension. */
export function extensionOf(name) {
  const match = /\.[^./\\]+$/.exec(String(name ?? ''));
  return match ? match[0].toLowerCase() : '';
}

/** "12 MB", "0.4 MB", as the backend counts them (2^20 bytes). */
export function formatMegabytes(bytes) {
  const mb = bytes / 2 ** 20;
  return `${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB`;
}

/** "8.0 s", "42 s", "12 min 30 s". */
export function formatSeconds(seconds) {
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const whole = Math.round(seconds);
  const m = Math.floor(whole / 60);
  const s = whole % 60;
  return s ? `${m} min ${s} s` : `${m} min`;
}

/** True when the file's type or its extension says video (the probe then decides). */
export function looksLikeVideo({ name, type }) {
  if (typeof type === 'string' && type.toLowerCase().startsWith('video/')) return true;
  return VIDEO_EXTENSIONS.includes(extensionOf(name));
}

/** The content type an upload of this file declares: its own when it is a video type. */
export function videoContentType({ name, type }) {
  if (typeof type === 'string' && /^video\/[\w.+-]{1,60}$/i.test(type)) return type.toLowerCase();
  return VIDEO_TYPES[extensionOf(name)] ?? 'video/mp4';
}

/**
 * The first check, from what the file says about itself: `{ok: true}`, or `{ok: false,
 * message}` with a sentence for the rep.
 * @param {{name: string, type?: string, size: number}} file
 */
export function checkFile(file) {
  const name = file?.name ?? 'This file';
  const size = Number(file?.size);
  if (!Number.isFinite(size) || size <= 0) {
    return { ok: false, message: `This file is empty (${name} has 0 bytes). Choose the video itself.` };
  }
  if (!looksLikeVideo(file)) {
    const kind = file.type ? ` (${name} is ${file.type})` : ` (${name})`;
    return {
      ok: false,
      message: `This is not a video${kind}. Choose an MP4, MOV, WebM or MKV video.`,
    };
  }
  if (size > MAX_VIDEO_BYTES) {
    return {
      ok: false,
      message: `This video is ${formatMegabytes(size)}; the limit is ${formatMegabytes(MAX_VIDEO_BYTES)}. Export it shorter or at a lower quality.`,
    };
  }
  return { ok: true };
}

/**
 * The second check, from what this browser made of the file when it loaded it into a <video>:
 * `probe` is `{event: 'loadedmetadata', duration, videoWidth}`, `{event: 'error'}` or
 * `{event: 'timeout'}`. Returns `{ok: true, duration?, note?}` or `{ok: false, message}`.
 * A duration of Infinity (a WebM recorded in a browser says none in its header) is let through:
 * the worker measures it. A timeout is let through too, with a note: some phones load nothing
 * until the video is played, and the worker checks every upload again.
 */
export function judgeProbe(probe) {
  const cannotPlay = `This browser cannot play this file, so it cannot be a video we can use. ${EXPORT_AGAIN}`;
  if (!probe || probe.event === 'error') return { ok: false, message: cannotPlay };
  if (probe.event === 'timeout') {
    return {
      ok: true,
      note: 'This browser did not open the video in time to check it here; it is checked again after the upload.',
    };
  }
  if (probe.event !== 'loadedmetadata') return { ok: false, message: cannotPlay };
  const duration = Number(probe.duration);
  const width = Number(probe.videoWidth);
  if (Number.isNaN(duration) || duration <= 0) return { ok: false, message: cannotPlay };
  if (!(width > 0)) {
    return { ok: false, message: 'This file has sound but no picture: choose the video itself, or export it again as MP4 or WebM.' };
  }
  if (Number.isFinite(duration) && duration > MAX_VIDEO_SECONDS) {
    return {
      ok: false,
      message: `This video lasts ${formatSeconds(duration)}; the limit is ${formatSeconds(MAX_VIDEO_SECONDS)}. Trim it and choose it again.`,
    };
  }
  if (Number.isFinite(duration) && duration <= MIN_VIDEO_SECONDS) {
    return {
      ok: false,
      message: `This video lasts ${formatSeconds(duration)}: it needs the greeting and at least ${MIN_VIDEO_SECONDS} s after it.`,
    };
  }
  return { ok: true, duration: Number.isFinite(duration) ? duration : undefined };
}
