// What a job's status means to the person waiting for it (flows/job.py has the statuses).

export const STATUS_WORDS = {
  pending: 'Waiting to start',
  queued: 'Queued',
  'validating-input': 'Checking the video',
  'processing-audio': 'Voicing the greeting',
  'generating-video': 'Rendering the video',
  'uploading-result': 'Saving the result',
  completed: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
  'cancel-requested': 'Cancelling…',
  'retry-requested': 'Retrying…',
};

// While a job has one of these, its owner may ask to cancel it (firestore.rules agree).
export const CANCELLABLE = new Set([
  'pending', 'queued', 'validating-input', 'processing-audio', 'generating-video',
  'uploading-result',
]);
export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export function statusWords(status) {
  return STATUS_WORDS[status] ?? status ?? 'Unknown';
}

/** "0.8 s", "42 s", "3 min 05 s", "1 h 02 min". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const sec = whole % 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  return `${m} min ${String(sec).padStart(2, '0')} s`;
}

// What a job's document says about its result, one short line each ('' when there is nothing to
// say). Pure and forgiving: fields the server did not write, or wrote oddly, give no line.

/** A finite number from a number or a numeric string; null for anything else. */
function finite(value) {
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string' && value.trim() !== '') {
    const n = Number(value);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

/** "Greeting ends at 0.97 s": the end given, or the one the worker found and wrote back. */
export function greetingEndLabel(job) {
  const end = finite(job?.greetingEndSecond);
  if (end == null || end <= 0) return '';
  return `Greeting ends at ${end.toFixed(2)} s`;
}

/**
 * What fitting the greeting to its slot took (a completed job's `fit`), e.g. "Fitted: spoken
 * 1.12x faster, stretched 1.04x, used 0.30 s of the pause after the greeting". Only what was
 * done, as it would read: a factor that shows as 1.00x or a time that shows as 0.00 s is left
 * out, and nothing done at all is ''.
 */
export function fitSummary(fit) {
  if (!fit || typeof fit !== 'object') return '';
  const parts = [];
  const speed = finite(fit.providerSpeed);
  if (speed != null && speed > 0 && speed.toFixed(2) !== '1.00') {
    parts.push(speed > 1 ? `spoken ${speed.toFixed(2)}x faster` : `spoken at ${speed.toFixed(2)}x speed`);
  }
  const tempo = finite(fit.tempo);
  if (tempo != null && tempo > 0 && tempo.toFixed(2) !== '1.00') parts.push(`stretched ${tempo.toFixed(2)}x`);
  const pause = finite(fit.pauseUsedSecond);
  if (pause != null && pause > 0 && pause.toFixed(2) !== '0.00') {
    parts.push(`used ${pause.toFixed(2)} s of the pause after the greeting`);
  }
  const lead = finite(fit.leadTrimmedSecond);
  if (lead != null && lead > 0 && lead.toFixed(2) !== '0.00') {
    parts.push(`cut ${lead.toFixed(2)} s of leading silence`);
  }
  return parts.length ? `Fitted: ${parts.join(', ')}` : '';
}

/** Which voice spoke (`voiceUsed`, written for voiceId "clone"): "Voice: local (espeak:en-us)". */
export function voiceLabel(job) {
  const used = job?.voiceUsed;
  if (typeof used !== 'string' || used.trim() === '') return '';
  const voice = used.trim();
  if (voice.startsWith('espeak:') || voice.startsWith('piper:')) return `Voice: local (${voice})`;
  if (job.voiceId === 'clone') return `Voice: cloned (${voice})`;
  return `Voice: ${voice}`;
}

/**
 * Whether the owner's Retry can help: only a failure its error marks retryable (flows/job.py
 * RETRYABLE_CODES, and `rate-limited`). A retry of anything else would fail the same way (a later
 * change lets the rep edit the job and retry it), and a job whose retries are used up is marked
 * not retryable by the trigger.
 */
export function canRetry(job) {
  return job?.status === 'failed' && job.error?.retryable === true;
}

/**
 * What became of a Cancel or Retry, from the answer the trigger writes on the request document
 * (triggers/main.py `on_request_created`: `outcome` "cancelled", "retrying" or "refused", and a
 * `message`), in the words the row shows.
 */
export function requestAnswerText(action, answer) {
  const outcome = answer?.outcome;
  const message = typeof answer?.message === 'string' ? answer.message.trim() : '';
  if (action === 'cancel') {
    if (outcome === 'cancelled') return 'The job was cancelled.';
    if (outcome === 'refused') return 'The job had already finished, so there was nothing to cancel.';
  }
  if (action === 'retry') {
    if (outcome === 'retrying') {
      // The server counts retries from 1 ("Attempt 1 started."); the row's stages count attempts.
      const attempt = /attempt (\d+)/i.exec(message);
      // An edited retry's answer names its changes ("... started with the greeting ending at 2.4 s.").
      const edited = / started with (.+)\.$/.exec(message);
      const changes = edited ? ` with ${edited[1]}` : '';
      return attempt ? `Retrying${changes}: this is attempt ${Number(attempt[1]) + 1}.` : `Retrying${changes}.`;
    }
    if (outcome === 'refused') return message ? `The retry was refused: ${message}` : 'The retry was refused.';
  }
  if (message) return message;
  return typeof outcome === 'string' && outcome ? `The request was answered: ${outcome}.` : '';
}
