// The batch as the unit of "My jobs": which jobs go together and in what order, what a batch's
// header says (counts, progress, time left), which rows a filter shows, where a waiting job is in
// the queue, what is worth saying aloud and when, and whether "Download all" may go on.
// Pure: plain job objects ({id, ...the job document}) and times in milliseconds; jobs-view.js and
// batch-view.js put it on the page.

import { outputFilename } from './names.js';
import { TERMINAL } from './status.js';

// Above this many jobs a batch's rows are compact (name, status, one line of error, a small
// thumbnail; the player on demand): up to it, each row is the full card it always was.
export const COMPACT_ABOVE = 10;
// A batch's totals are said aloud at most once per this long (each failure is said by name).
export const ANNOUNCE_EVERY_MS = 5_000;
// "Download all" builds its zip in the browser's memory: refused above this.
export const ZIP_LIMIT_BYTES = 2 ** 30;
// How many videos "Download all" reads before it trusts their average size to refuse early.
const ZIP_SAMPLE = 3;

export const WAITING = new Set(['pending', 'queued']);

/** Milliseconds of a Firestore Timestamp, a Date, {seconds, nanoseconds} or a number; else null. */
export function millis(value) {
  if (value == null) return null;
  if (typeof value.toMillis === 'function') return value.toMillis();
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value.seconds === 'number') return value.seconds * 1000 + Math.floor((value.nanoseconds ?? 0) / 1e6);
  return null;
}

const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const byNumber = (a, b) => (a < b ? -1 : a > b ? 1 : 0); // Infinity-safe, unlike a - b

/** Which group a job is shown in: its batch, or (a preview, or no batch) its own. */
export function groupKey(job) {
  if (job.preview === true || typeof job.batchId !== 'string' || !job.batchId) return `job:${job.id}`;
  return `batch:${job.batchId}`;
}

/** The rep's list order inside a batch: the CSV's row (batchIndex), then creation, then id. */
export function compareInBatch(a, b) {
  const row = (job) => (Number.isInteger(job.batchIndex) && job.batchIndex >= 0 ? job.batchIndex : Infinity);
  const made = (job) => millis(job.createdAt) ?? Infinity;
  return byNumber(row(a), row(b)) || byNumber(made(a), made(b)) || byText(a.id, b.id);
}

/**
 * The jobs in groups, newest group first (by its newest job; one not yet timestamped by the
 * server counts as now). Each group: {key, batchId (null for a job of its own), jobs (in the
 * rep's list order), newest, headed (a batch of 2 or more: it gets a header), compact}.
 */
export function groupJobs(jobs, { now = Date.now() } = {}) {
  const groups = new Map();
  for (const job of jobs) {
    const key = groupKey(job);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(job);
  }
  const list = [...groups].map(([key, members]) => {
    members.sort(compareInBatch);
    let newest = -Infinity;
    for (const job of members) newest = Math.max(newest, millis(job.createdAt) ?? now);
    const batchId = key.startsWith('batch:') ? key.slice('batch:'.length) : null;
    const headed = batchId !== null && members.length >= 2;
    return { key, batchId, jobs: members, newest, headed, compact: headed && members.length > COMPACT_ABOVE };
  });
  return list.sort((a, b) => byNumber(b.newest, a.newest) || byText(a.key, b.key));
}

/**
 * The batches whose jobs reach the end of a full list window (its oldest createdAt): the window
 * may hold only some of their jobs, so each is worth a listener of its own. `jobs` are the
 * window's ({batchId, createdAt} suffice); `full` says whether the query hit its limit.
 */
export function batchesAtCutoff(jobs, { full }) {
  if (!full || !jobs.length) return [];
  let cutoff = Infinity;
  for (const job of jobs) cutoff = Math.min(cutoff, millis(job.createdAt) ?? Infinity);
  const ids = new Set();
  for (const job of jobs) {
    if ((millis(job.createdAt) ?? Infinity) === cutoff && typeof job.batchId === 'string' && job.batchId) ids.add(job.batchId);
  }
  return [...ids];
}

// ---- a batch's header ----

/** {total, done, failed, cancelled, running (not finished, waiting ones too), waiting, finished}. */
export function countJobs(jobs) {
  const c = { total: jobs.length, done: 0, failed: 0, cancelled: 0, running: 0, waiting: 0, finished: 0 };
  for (const { status } of jobs) {
    if (status === 'completed') c.done += 1;
    else if (status === 'failed') c.failed += 1;
    else if (status === 'cancelled') c.cancelled += 1;
    else {
      c.running += 1;
      if (WAITING.has(status)) c.waiting += 1;
    }
  }
  c.finished = c.done + c.failed + c.cancelled;
  return c;
}

export function batchTitle(counts) {
  return `Batch of ${counts.total}`;
}

/** "38 done, 2 failed, 0 running" (and ", 1 cancelled" when any was). */
export function countsWords(counts) {
  const parts = [`${counts.done} done`, `${counts.failed} failed`, `${counts.running} running`];
  if (counts.cancelled) parts.push(`${counts.cancelled} cancelled`);
  return parts.join(', ');
}

/** The progress bar's accessible name: "Batch of 40: 38 of 40 finished". */
export function progressLabel(counts) {
  return `${batchTitle(counts)}: ${counts.finished} of ${counts.total} finished`;
}

/** When a finished job finished: its completedAt, else its last stage's time. */
function finishedAt(job) {
  const done = millis(job.completedAt);
  if (done != null) return done;
  const history = Array.isArray(job.history) ? job.history : [];
  return history.length ? millis(history[history.length - 1]?.at) : null;
}

/**
 * Milliseconds the batch's unfinished jobs need at the rate its jobs finished so far (jobs
 * finished per millisecond since the batch was created), or null: nothing finished yet, nothing
 * left, or no times to go by.
 */
export function etaMs(jobs, now = Date.now()) {
  let start = Infinity;
  let finished = 0;
  let left = 0;
  for (const job of jobs) {
    const created = millis(job.createdAt);
    if (created != null) start = Math.min(start, created);
    if (!TERMINAL.has(job.status)) left += 1;
    else if (finishedAt(job) != null) finished += 1;
  }
  if (!left || !finished || !Number.isFinite(start) || now <= start) return null;
  return (left * (now - start)) / finished;
}

/** "about 40 s left", "about 3 min left", "about 1 h 05 min left"; '' for no estimate. */
export function etaWords(ms) {
  if (ms == null || !Number.isFinite(ms) || ms < 0) return '';
  const s = ms / 1000;
  if (s < 10) return 'a few seconds left';
  if (s < 60) return `about ${Math.max(10, Math.round(s / 5) * 5)} s left`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `about ${minutes} min left`;
  return `about ${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min left`;
}

// ---- filters: a batch's rows by what became of them ----

export const FILTERS = [
  { key: 'all', label: 'All' },
  { key: 'running', label: 'Running' },
  { key: 'failed', label: 'Failed' },
  { key: 'done', label: 'Done' },
];

export function matchesFilter(key, status) {
  if (key === 'running') return !TERMINAL.has(status);
  if (key === 'failed') return status === 'failed';
  if (key === 'done') return status === 'completed';
  return true;
}

export function filterCount(key, counts) {
  return { all: counts.total, running: counts.running, failed: counts.failed, done: counts.done }[key] ?? 0;
}

/** What shows where a filter leaves no row: "No failed jobs in this batch." */
export function emptyFilterWords(key) {
  const what = { running: 'running', failed: 'failed', done: 'finished videos' }[key];
  if (!what) return 'No jobs in this batch.';
  return key === 'done' ? 'No finished videos in this batch yet.' : `No ${what} jobs in this batch.`;
}

// ---- the queue ----

/**
 * For each of the user's waiting jobs (pending or queued), how many waiting jobs were created
 * before it (a batch made in one commit shares its time: its rows go in the list's order).
 */
export function queuePositions(jobs) {
  const waiting = jobs.filter((job) => WAITING.has(job.status));
  waiting.sort((a, b) => byNumber(millis(a.createdAt) ?? Infinity, millis(b.createdAt) ?? Infinity)
    || byText(a.batchId ?? '', b.batchId ?? '') || compareInBatch(a, b));
  return new Map(waiting.map((job, ahead) => [job.id, ahead]));
}

/** "3 ahead", or "next" for a job with none before it. */
export function queueWords(ahead) {
  if (ahead == null) return '';
  return ahead === 0 ? 'next' : `${ahead} ahead`;
}

// ---- what is said aloud ----

/** A batch's totals as read out: "Batch of 40: 20 done, 1 failed" ("… finished: …" at the end). */
export function totalsWords(counts) {
  const parts = [`${counts.done} done`, `${counts.failed} failed`];
  if (counts.cancelled) parts.push(`${counts.cancelled} cancelled`);
  const ended = counts.total > 0 && counts.finished === counts.total;
  return `${batchTitle(counts)}${ended ? ' finished' : ''}: ${parts.join(', ')}`;
}

const SHORT_REASONS = {
  'greeting-too-long': 'the greeting is too long',
  'invalid-voice': 'the voice does not exist',
  'invalid-name': 'the name cannot be used',
  'invalid-greeting-end': 'the greeting end is not in the video',
  'invalid-greeting-text': 'the greeting text cannot be used',
  'rate-limited': 'too many new jobs this minute',
  'input-not-found': 'the video is missing',
  'input-too-long': 'the video is too long',
  'render-timeout': 'rendering took too long',
  'render-failed': 'the video could not be rendered',
  'tts-unavailable': 'the voice service did not answer',
  'worker-lost': 'the worker stopped',
};

/** A failure in a few words: known codes by name, else the message's first sentence. */
export function failureReason(error) {
  const short = SHORT_REASONS[error?.code];
  if (short) return short;
  const message = typeof error?.message === 'string' ? error.message.trim() : '';
  if (!message) return typeof error?.code === 'string' && error.code ? error.code : 'an unknown error';
  const first = message.split(/(?<=[.!?])\s/)[0].replace(/[.!?]$/, '');
  const clipped = first.length > 120 ? `${first.slice(0, 119)}…` : first;
  return /^[A-Z][a-z]/.test(clipped) ? clipped[0].toLowerCase() + clipped.slice(1) : clipped;
}

/**
 * What to say about failures that came together, one sentence per reason: "Maximilian failed:
 * the greeting is too long", "Ann, Ben and 3 others failed: the greeting is too long".
 * `failures`: [{name, error}].
 */
export function failureWords(failures) {
  const byReason = new Map();
  for (const { name, error } of failures) {
    const reason = failureReason(error);
    if (!byReason.has(reason)) byReason.set(reason, []);
    byReason.get(reason).push(name || 'A job');
  }
  return [...byReason].map(([reason, names]) => {
    let who;
    if (names.length === 1) [who] = names;
    else if (names.length <= 3) who = `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
    else who = `${names.slice(0, 2).join(', ')} and ${names.length - 2} others`;
    return `${who} failed: ${reason}`;
  });
}

/**
 * At most one announcement per key (a batch) per `everyMs`: words noted sooner wait, and a
 * later note replaces them (only the latest totals are worth hearing). Words equal to the last
 * said are not said again. `seed` sets what counts as said without saying it (a batch that just
 * appeared, or grew as its jobs were read, is not news).
 */
export class Throttle {
  constructor(everyMs = ANNOUNCE_EVERY_MS) {
    this.everyMs = everyMs;
    this.keys = new Map();
  }

  has(key) {
    return this.keys.has(key);
  }

  seed(key, words) {
    const entry = this.keys.get(key);
    if (entry) {
      entry.said = words;
      entry.waiting = null;
    } else {
      this.keys.set(key, { said: words, at: -Infinity, waiting: null });
    }
  }

  /** The words to say now, or null (said later by `due`, or never if they change back). */
  note(key, words, now) {
    const entry = this.keys.get(key) ?? { said: null, at: -Infinity, waiting: null };
    this.keys.set(key, entry);
    if (words === entry.said) {
      entry.waiting = null;
      return null;
    }
    if (now - entry.at >= this.everyMs) {
      Object.assign(entry, { said: words, at: now, waiting: null });
      return words;
    }
    entry.waiting = words;
    return null;
  }

  /** The waiting words whose time has come, each now counted as said. */
  due(now) {
    const out = [];
    for (const entry of this.keys.values()) {
      if (entry.waiting != null && now - entry.at >= this.everyMs) {
        out.push(entry.waiting);
        Object.assign(entry, { said: entry.waiting, at: now, waiting: null });
      }
    }
    return out;
  }

  forget(key) {
    this.keys.delete(key);
  }
}

// ---- "Download all": the batch's videos as one zip ----

/** "840 KB", "12.5 MB", "212 MB", "1.02 GB" (binary units, as the page's other sizes). */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 2 ** 20) return `${Math.max(1, Math.round(bytes / 2 ** 10))} KB`;
  if (bytes < 2 ** 30) {
    const mb = bytes / 2 ** 20;
    return `${mb < 10 ? mb.toFixed(1) : Math.round(mb)} MB`;
  }
  return `${(bytes / 2 ** 30).toFixed(2)} GB`;
}

const webUrl = (value) => (typeof value === 'string' && /^https?:\/\/\S+$/i.test(value.trim()) ? value.trim() : '');

/** The batch's finished videos, in its order, each under the name its own download has. */
export function zipEntries(jobs) {
  return jobs
    .filter((job) => job.status === 'completed' && webUrl(job.downloadUrl))
    .map((job) => ({ id: job.id, url: webUrl(job.downloadUrl), name: outputFilename(job.prospectName ?? '', job.id) }));
}

/** "prospects-videos.zip" for a list sent from prospects.csv, else "batch-<id>-videos.zip". */
export function zipFileName(sourceName, batchId = '') {
  const base = typeof sourceName === 'string' ? sourceName.replace(/\.csv$/i, '').trim() : '';
  if (base) return `${base}-videos.zip`;
  const id = String(batchId).replace(/[^A-Za-z0-9_-]+/g, '').slice(0, 8);
  return id ? `batch-${id}-videos.zip` : 'videos.zip';
}

/**
 * Whether the zip may go on after `fetched` of `total` videos came to `bytes`: null, or why
 * not, in words. Past the limit it stops; after a few videos, an average that puts the whole
 * batch past it refuses early, before the rest are read.
 */
export function zipRefusal({ bytes, fetched, total, limit = ZIP_LIMIT_BYTES }) {
  const advice = 'Download them one by one instead (each row has its Download link).';
  if (bytes > limit) {
    return `The videos come to more than ${formatBytes(limit)} (${formatBytes(bytes)} after ${fetched} of ${total}): too much for one zip made in the browser. ${advice}`;
  }
  if (fetched >= Math.min(ZIP_SAMPLE, total) && fetched < total) {
    const estimate = (bytes / fetched) * total;
    if (estimate > limit) {
      return `These ${total} videos would come to about ${formatBytes(estimate)}: more than the ${formatBytes(limit)} a zip made in the browser may hold. ${advice}`;
    }
  }
  return null;
}

/** What "Download all" did: "Downloaded prospects-videos.zip: 38 videos, 212 MB." */
export function zipDoneWords({ fileName, count, bytes, failed = 0 }) {
  const videos = `${count} ${count === 1 ? 'video' : 'videos'}`;
  const missed = failed ? ` ${failed} could not be read (a link may have expired: reload the page and try again).` : '';
  return `Downloaded ${fileName}: ${videos}, ${formatBytes(bytes)}.${missed}`;
}

export function zipButtonLabel(count) {
  return `Download all (${count} ${count === 1 ? 'video' : 'videos'})`;
}

// ---- the list's order on the page ----

/**
 * Which items of `desired` may stay where they are so that moving the others gives that order
 * with the fewest moves: `positions[i]` is item i's current position (-1: not there yet); the
 * answer is the set of indexes of `desired` on a longest increasing run of positions.
 * (A row moved out of the page and back loses the keyboard's focus: few moves, few losses.)
 */
export function stayingIndexes(positions) {
  const tails = []; // tails[k]: index (into positions) ending the best run of length k + 1
  const previous = new Array(positions.length).fill(-1);
  for (let i = 0; i < positions.length; i++) {
    const p = positions[i];
    if (p < 0) continue;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (positions[tails[mid]] < p) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) previous[i] = tails[lo - 1];
    tails[lo] = i;
  }
  const keep = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = previous[i]) keep.add(i);
  return keep;
}
