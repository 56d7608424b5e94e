// The `greetingJobs` documents this user creates, watches and asks to cancel or retry.
// What a client may write is fixed by firestore.rules (flows/job.py describes the document).

import {
  addDoc, collection, doc, getDocs, limit, onSnapshot, orderBy, query, serverTimestamp, where,
  writeBatch,
} from 'firebase/firestore';

export const JOBS = 'greetingJobs';
export const BATCHES = 'greetingBatches';
export const LIST_LIMIT = 200;
// Jobs per batch: the jobs and their batch document go in one commit (at most 500 writes).
const BATCH_JOBS = 400;
// firestore.rules: a job's row in the rep's list is below this.
const MAX_BATCH_INDEX = 100_000;

export function newBatchId() {
  return crypto.randomUUID();
}

/**
 * The ids of the batches createJobs makes for `count` names under `batchId`: one per 400 names,
 * the first `batchId` itself, so the page knows every batch of a list it sent.
 */
export function batchIdsFor(batchId, count) {
  const batches = Math.max(1, Math.ceil(count / BATCH_JOBS));
  return Array.from({ length: batches }, (_, k) => (k === 0 ? batchId : `${batchId}-${k + 1}`));
}

/**
 * One job per name, with exactly the fields the rules allow, and per 400 names a
 * greetingBatches document listing them, in the same commit: the trigger then starts the whole
 * batch as one flow run (a job that names a batch waits for its batch document).
 * `firstNames[i]`, a string, is the job's `firstName`; undefined, the pipeline derives it.
 * `pronunciations[i]`, a string, is the job's `pronunciation` (spoken for the name, never shown);
 * `followingText`, the batch's words after the greeting, goes on every job (jobs are separate
 * documents: each carries its own copy).
 * `rows[i]` is name i's row in the rep's list, the job's `batchIndex` (names.js: a CSV's data
 * row, blank and skipped rows counted as `greetings submit` counts them); without it, i.
 * Returns the new job ids.
 * @param {{uid: string, inputVideo: string, names: string[], firstNames?: (string|undefined)[],
 *          pronunciations?: (string|undefined)[], rows?: number[], voiceId: string,
 *          greetingEndSecond?: number,
 *          greetingText?: string, followingText?: string, preview?: boolean,
 *          senderName?: string, ctaText?: string, ctaUrl?: string, batchId: string}} request
 */
export async function createJobs(db, request) {
  const { uid, inputVideo, names, voiceId, greetingEndSecond, greetingText, followingText } = request;
  const firstNames = request.firstNames ?? [];
  const pronunciations = request.pronunciations ?? [];
  const rows = request.rows ?? [];
  const batchIds = batchIdsFor(request.batchId, names.length);
  const ids = [];
  for (let start = 0; start < names.length; start += BATCH_JOBS) {
    const batchId = batchIds[start / BATCH_JOBS];
    const batch = writeBatch(db);
    const jobIds = [];
    for (let i = start; i < Math.min(start + BATCH_JOBS, names.length); i++) {
      const prospectName = names[i];
      const ref = doc(collection(db, JOBS));
      const job = {
        userId: uid,
        inputVideo,
        prospectName,
        voiceId,
        batchId,
        status: 'pending',
        createdAt: serverTimestamp(),
      };
      if (greetingEndSecond !== undefined) job.greetingEndSecond = greetingEndSecond;
      if (greetingText) job.greetingText = greetingText;
      if (typeof firstNames[i] === 'string') job.firstName = firstNames[i];
      if (pronunciations[i]) job.pronunciation = pronunciations[i];
      if (followingText) job.followingText = followingText;
      // The share page's sender line and button (firestore.rules: ctaUrl https only).
      for (const field of ['senderName', 'ctaText', 'ctaUrl']) if (request[field]) job[field] = request[field];
      const row = Number.isInteger(rows[i]) && rows[i] >= 0 ? rows[i] : i;
      if (row < MAX_BATCH_INDEX) job.batchIndex = row;
      if (request.preview) job.preview = true; // one job to hear before sending the batch
      batch.set(ref, job);
      jobIds.push(ref.id);
    }
    batch.set(doc(db, BATCHES, batchId), { userId: uid, jobIds, createdAt: serverTimestamp() });
    await batch.commit();
    ids.push(...jobIds);
  }
  return ids;
}

/** One live listener on the user's jobs, newest first; `onChanges(snapshot)` gets each update. */
export function watchJobs(db, uid, onChanges, onError) {
  const mine = query(
    collection(db, JOBS),
    where('userId', '==', uid),
    orderBy('createdAt', 'desc'),
    limit(LIST_LIMIT),
  );
  return onSnapshot(mine, onChanges, onError);
}

/**
 * One live listener on every job of one batch of the user's, for a batch larger than what
 * watchJobs' window holds of it. Equality filters only: single-field indexes serve it, no
 * composite index needed (the page orders the rows itself).
 */
export function watchBatchJobs(db, uid, batchId, onChanges, onError) {
  const batch = query(
    collection(db, JOBS),
    where('userId', '==', uid),
    where('batchId', '==', batchId),
  );
  return onSnapshot(batch, onChanges, onError);
}

/** Every job of the user's in the batches `batchIds` (one list of names sent), as plain objects. */
export async function listBatchJobs(db, uid, batchIds) {
  // One equality query per batch: served by single-field indexes, no composite one needed.
  const snapshots = await Promise.all(batchIds.map((batchId) => getDocs(query(
    collection(db, JOBS),
    where('userId', '==', uid),
    where('batchId', '==', batchId),
  ))));
  return snapshots.flatMap((snapshot) => snapshot.docs.map((d) => ({ id: d.id, ...d.data() })));
}

/**
 * Asks the trigger to cancel (an unfinished job), retry (a failed one) or stop sharing
 * (`revoke-share`, a completed one with a share page); resolves to the
 * request document's reference (watchRequest follows its answer).
 */
export function requestAction(db, uid, jobId, action) {
  return addDoc(collection(db, JOBS, jobId, 'requests'), {
    action,
    userId: uid,
    createdAt: serverTimestamp(),
  });
}

/**
 * Calls `onAnswer({outcome, message})` once the trigger has answered the request at `ref` (it
 * writes `outcome`, `message` and `handledAt` on it: triggers/jobs.py mark_request_handled), then
 * stops listening. Returns a function that stops listening earlier.
 */
export function watchRequest(ref, onAnswer, onError = () => {}) {
  let stop = null;
  let done = false;
  stop = onSnapshot(
    ref,
    (snapshot) => {
      const data = snapshot.data();
      if (done || !data || typeof data.outcome !== 'string') return;
      done = true;
      stop?.();
      onAnswer({ outcome: data.outcome, message: typeof data.message === 'string' ? data.message : '' });
    },
    (error) => {
      if (!done) onError(error);
    },
  );
  if (done) stop();
  return () => {
    done = true;
    stop();
  };
}
