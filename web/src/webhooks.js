// The user's webhook endpoints: registered through the `create_webhook` callable (which makes the
// secret and shows it once: triggers/webhooks.py), read and deleted as Firestore documents, as
// firestore.rules allow the owner (`webhooks/{id}`: get, list, delete, and enabling it again; its
// `deliveries`: get, list). Only the worker writes deliveries (flows/webhooks.py).

import {
  collection, deleteDoc, deleteField, doc, limit, onSnapshot, orderBy, query, updateDoc, where,
} from 'firebase/firestore';
import { httpsCallable } from 'firebase/functions';

export const WEBHOOKS = 'webhooks';
export const DELIVERIES = 'deliveries';
export const DELIVERY_LIMIT = 10;

/**
 * Registers an endpoint; resolves to `{id, secret, url, events}` (the secret is in this answer
 * only). A refusal rejects with the callable's error (`functions/invalid-argument` and the
 * server's words).
 */
export async function createWebhook(functions, { url, events }) {
  const { data } = await httpsCallable(functions, 'create_webhook')({ url, events });
  if (!data || typeof data.id !== 'string' || typeof data.secret !== 'string') {
    throw new Error('create_webhook gave no endpoint id and secret');
  }
  return data;
}

/**
 * One live listener on the user's endpoints. Filtered by owner only (the rules require it, and
 * a user has at most 10): ordering them too would need a composite index; the page sorts.
 */
export function watchWebhooks(db, uid, onChanges, onError) {
  return onSnapshot(query(collection(db, WEBHOOKS), where('userId', '==', uid)), onChanges, onError);
}

/** One live listener on an endpoint's latest deliveries, newest first. */
export function watchDeliveries(db, endpointId, onChanges, onError) {
  const latest = query(
    collection(db, WEBHOOKS, endpointId, DELIVERIES),
    orderBy('createdAt', 'desc'),
    limit(DELIVERY_LIMIT),
  );
  return onSnapshot(latest, onChanges, onError);
}

/**
 * Deletes an endpoint: nothing more is sent to it (the worker ends its waiting deliveries, "the
 * endpoint was deleted"). Its deliveries are no longer readable: the rules read the endpoint.
 */
export function deleteWebhook(db, endpointId) {
  return deleteDoc(doc(db, WEBHOOKS, endpointId));
}

/**
 * Enables a disabled endpoint again: the one write the rules give the owner, which must also
 * clear its failure record (a stale `failingSince` would disable it again at the next failure).
 */
export function enableWebhook(db, endpointId) {
  return updateDoc(doc(db, WEBHOOKS, endpointId), {
    disabled: false,
    disabledReason: deleteField(),
    disabledAt: deleteField(),
    failingSince: deleteField(),
  });
}
