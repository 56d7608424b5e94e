// "Edit and retry": a failed job's next attempt with its greeting end, text, first name or
// pronunciation changed, asked for with a retry request carrying `changes` (firestore.rules
// validEdits; the trigger checks again with flows/lifecycle.py edit_fields, whose rules and
// words these mirror). Never a new upload, never new jobs: the same jobs, a new attempt each.

import { collection, doc, serverTimestamp, writeBatch } from 'firebase/firestore';

import { JOBS } from './jobs.js';

// Failures an edit can fix: the words did not fit the slot, or were refused as written.
export const EDITABLE_CODES = new Set([
  'greeting-too-long', 'invalid-greeting-end', 'invalid-greeting-text', 'invalid-name', 'tts-rejected',
]);
export const MAX_GREETING_END_S = 10;
const REQUESTS_PER_COMMIT = 450; // Firestore takes 500 writes in one commit

/** Whether a failed job is one "Edit and retry" can help (a plain Retry may not). */
export function canEdit(job) {
  return job?.status === 'failed' && EDITABLE_CODES.has(job.error?.code);
}

/**
 * The edit form's values as `changes` (only what differs from the job), or `{error, field}` in
 * the page's words. `values` are the form's strings: greetingEnd, greetingText, firstName,
 * pronunciation; '' for the greeting text or pronunciation means "back to the default".
 */
export function changesFrom(values, job = {}) {
  const changes = {};
  const end = String(values.greetingEnd ?? '').trim();
  if (end !== String(job.greetingEndSecond ?? '')) {
    if (end === '') {
      changes.greetingEndSecond = null; // found from the recording
    } else {
      const seconds = Number(end);
      if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_GREETING_END_S) {
        return { error: `The greeting end must be more than 0 and at most ${MAX_GREETING_END_S} seconds.`, field: 'greetingEnd' };
      }
      if (seconds !== job.greetingEndSecond) changes.greetingEndSecond = seconds;
    }
  }
  const text = String(values.greetingText ?? '');
  if (text !== (job.greetingText ?? '')) {
    if (text.length > 200) return { error: 'The greeting text must be at most 200 characters.', field: 'greetingText' };
    changes.greetingText = text === '' ? null : text;
  }
  if (values.firstName !== undefined) {
    const first = String(values.firstName);
    if (first !== (job.firstName ?? '')) {
      if (first.length > 100) return { error: 'The first name must be at most 100 characters.', field: 'firstName' };
      changes.firstName = first;
    }
  }
  if (values.pronunciation !== undefined) {
    const said = String(values.pronunciation);
    if (said !== (job.pronunciation ?? '')) {
      if (said.length > 100) return { error: 'The pronunciation must be at most 100 characters.', field: 'pronunciation' };
      changes.pronunciation = said === '' ? null : said;
    }
  }
  if (Object.keys(changes).length === 0) return { error: 'Change something first: the same job would fail the same way.', field: 'greetingEnd' };
  return { changes };
}

/**
 * The failed jobs of `job`'s batch that one edit may be applied to: same batch, failed with an
 * error an edit can fix (the job itself first). Jobs outside a batch stand alone.
 */
export function sameBatchFailures(job, jobs) {
  if (!job?.batchId) return [job];
  const others = jobs.filter((j) => j.id !== job.id && j.batchId === job.batchId && canEdit(j));
  return [job, ...others];
}

/**
 * Writes one retry request with `changes` per job id, in as few commits as Firestore allows;
 * resolves to the request references (watchRequest follows each answer). A job's first name and
 * pronunciation are its own: `perJob(id)` may return changes for that job only.
 */
export async function requestEditAndRetry(db, uid, jobIds, changes, perJob = () => ({})) {
  const refs = [];
  for (let start = 0; start < jobIds.length; start += REQUESTS_PER_COMMIT) {
    const batch = writeBatch(db);
    for (const jobId of jobIds.slice(start, start + REQUESTS_PER_COMMIT)) {
      const ref = doc(collection(db, JOBS, jobId, 'requests'));
      batch.set(ref, {
        action: 'retry',
        userId: uid,
        changes: { ...changes, ...perJob(jobId) },
        createdAt: serverTimestamp(),
      });
      refs.push(ref);
    }
    await batch.commit();
  }
  return refs;
}
