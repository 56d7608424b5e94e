// The `greetingJobs` documents this user creates, watches and asks to cancel or retry.
// What a client may write is fixed by firestore.rules (flows/job.py describes the document).

import {
  addDoc, collection, doc, limit, onSnapshot, orderBy, query, serverTimestamp, where, writeBatch,
} from 'firebase/firestore';

export const JOBS = 'greetingJobs';
export const BATCHES = 'greetingBatches';
export const LIST_LIMIT = 200;
// Jobs per batch: the jobs and their batch document go in one commit (at most 500 writes).
const BATCH_JOBS = 400;

export function newBatchId() {
  return crypto.randomUUID();
}

/**
 * One job per name, with exactly the fields the rules allow, and per 400 names a
 * greetingBatches document listing them, in the same commit: the trigger then starts the whole
 * batch as one flow run (a job that names a batch waits for its batch document).
 * `firstNames[i]`, a string, is the job's `firstName`; undefined, the pipeline derives it.
 * `pronunciations[i]`, a string, is the job's `pronunciation` (spoken for the name, never shown);
 * `followingText`, the batch's words after the greeting, goes on every job (jobs are separate
 * documents: each carries its own copy).
 * Returns the new job ids.
 * @param {{uid: string, inputVideo: string, names: string[], firstNames?: (string|undefined)[],
 *          pronunciations?: (string|undefined)[], voiceId: string, greetingEndSecond?: number,
 *          greetingText?: string, followingText?: string, preview?: boolean,
 *          batchId: string}} request
 */
export async function createJobs(db, request) {
  const { uid, inputVideo, names, voiceId, greetingEndSecond, greetingText, followingText } = request;
  const firstNames = request.firstNames ?? [];
  const pronunciations = request.pronunciations ?? [];
  const ids = [];
  for (let start = 0; start < names.length; start += BATCH_JOBS) {
    const batchId = start === 0 ? request.batchId : newBatchId();
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
 * Asks the trigger to cancel (an unfinished job) or retry (a failed one); resolves to the
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
