// The `fitChecks` documents the page writes before a batch, and their answer (flows/fit_check.py
// writes it on the same document). fitcheck-view.js builds the documents and reads the answer;
// this module only talks to Firestore. firestore.rules fix what a client may write.

import {
  collection, deleteDoc, doc, onSnapshot, serverTimestamp, writeBatch,
} from 'firebase/firestore';

import { fitCheckDocuments, mergeChecks } from './fitcheck-view.js';

export const FIT_CHECKS = 'fitChecks';
// A check that did not answer in time is still followed this long after the page moved on, so
// it is deleted once its flow has written the answer: deleting it under a running flow would
// make that last write fail. After this it is deleted regardless.
const FOLLOW_AFTER_TIMEOUT_MS = 10 * 60_000;

/**
 * Asks which of the batch's names fit its video's greeting slot. Writes one document per 400
 * names (fitcheck-view.js), in one commit, then follows them; resolves once all are answered
 * (`{status: 'done', check}`, the parts' answers merged), one failed (`{status: 'failed',
 * error}`; a refused write too) or `timeoutMs` passed (`{status: 'timeout'}`). Never rejects:
 * whatever goes wrong, the caller can still create the jobs.
 * Every document is deleted once answered (best effort: a check is of no use afterwards).
 * `onStatus(status)` hears each step of a waiting check ('pending', 'queued', 'running').
 * @param {import('firebase/firestore').Firestore} db
 * @param {{uid: string, inputVideo: string, batch: object, timeoutMs: number,
 *          onStatus?: (status: string) => void}} request
 */
export async function runFitCheck(db, { uid, inputVideo, batch, timeoutMs, onStatus = () => {} }) {
  const documents = fitCheckDocuments(uid, inputVideo, batch);
  // Ids as jobs get theirs: Firestore's own (20 letters and digits, which the rules' validId takes).
  const refs = documents.map(() => doc(collection(db, FIT_CHECKS)));
  try {
    const write = writeBatch(db);
    refs.forEach((ref, i) => write.set(ref, { ...documents[i], createdAt: serverTimestamp() }));
    await write.commit();
  } catch (error) {
    return { status: 'failed', error: { code: error.code, message: error.message } };
  }
  // Listened to only once written: the rules let the owner read an existing document only.
  return new Promise((resolve) => {
    const answers = refs.map(() => null);
    let decided = false;
    let open = refs.length;
    let abandon = null;
    const decide = (outcome) => {
      if (decided) return;
      decided = true;
      clearTimeout(timer);
      resolve(outcome);
    };
    const timer = setTimeout(() => decide({ status: 'timeout' }), timeoutMs);
    const ends = refs.map((ref, i) => {
      let stop = null;
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        stop?.();
        deleteDoc(ref).catch(() => {}); // best effort: an undeleted check harms nothing
        open -= 1;
        if (open === 0) clearTimeout(abandon);
      };
      stop = onSnapshot(
        ref,
        (snapshot) => {
          const data = snapshot.data();
          if (ended || !data) return;
          if (data.status === 'done') {
            answers[i] = data;
            end();
            if (answers.every(Boolean)) decide({ status: 'done', check: mergeChecks(answers) });
          } else if (data.status === 'failed') {
            end();
            decide({ status: 'failed', error: data.error ?? {} });
          } else if (!decided) {
            onStatus(data.status);
          }
        },
        (error) => {
          end();
          decide({ status: 'failed', error: { code: error.code, message: error.message } });
        },
      );
      return end;
    });
    abandon = setTimeout(() => ends.forEach((end) => end()), timeoutMs + FOLLOW_AFTER_TIMEOUT_MS);
  });
}
