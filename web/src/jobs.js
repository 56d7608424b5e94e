// The `greetingJobs` documents this user creates, watches and asks to cancel or retry.
// What a client may write is fixed by firestore.rules (flows/job.py describes the document).

import {
  addDoc, collection, doc, limit, onSnapshot, orderBy, query, serverTimestamp, where, writeBatch,
} from 'firebase/firestore';

export const JOBS = 'greetingJobs';
export const LIST_LIMIT = 200;
const BATCH_WRITES = 400; // Firestore takes at most 500 writes per batch

export function newBatchId() {
  return crypto.randomUUID();
}

/**
 * One job per name, with exactly the fields the rules allow. Returns the new job ids.
 * @param {{uid: string, inputVideo: string, names: string[], voiceId: string,
 *          greetingEndSecond: number, greetingText?: string, batchId: string}} request
 */
export async function createJobs(db, request) {
  const { uid, inputVideo, names, voiceId, greetingEndSecond, greetingText, batchId } = request;
  const ids = [];
  for (let start = 0; start < names.length; start += BATCH_WRITES) {
    const batch = writeBatch(db);
    for (const prospectName of names.slice(start, start + BATCH_WRITES)) {
      const ref = doc(collection(db, JOBS));
      const job = {
        userId: uid,
        inputVideo,
        prospectName,
        voiceId,
        greetingEndSecond,
        batchId,
        status: 'pending',
        createdAt: serverTimestamp(),
      };
      if (greetingText) job.greetingText = greetingText;
      batch.set(ref, job);
      ids.push(ref.id);
    }
    await batch.commit();
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

/** Asks the trigger to cancel (an unfinished job) or retry (a failed one). */
export function requestAction(db, uid, jobId, action) {
  return addDoc(collection(db, JOBS, jobId, 'requests'), {
    action,
    userId: uid,
    createdAt: serverTimestamp(),
  });
}
