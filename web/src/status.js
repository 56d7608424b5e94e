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
