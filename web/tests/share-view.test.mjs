// The share page's decisions (web/src/share-view.js), without a browser.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  clientId, fetchPatiently, functionsBase, mediaRetryDelay, newMarks, RETRY_DELAYS_MS,
  shareIdFrom,
} from '../src/share-view.js';

test('the share id comes from /v/{shareId} only', () => {
  const id = 'Ab_-cdefghijklmnopqrstu';
  assert.equal(shareIdFrom(`/v/${id}`), id);
  assert.equal(shareIdFrom(`/v/${id}/`), id);
  assert.equal(shareIdFrom('/v/short'), null);
  assert.equal(shareIdFrom(`/v/${id}/more`), null);
  assert.equal(shareIdFrom(`/x/${id}`), null);
});

test('functions are the emulator\'s on the local stack, else the project\'s', () => {
  assert.equal(
    functionsBase('demo-greetings', { functions: { host: '127.0.0.1', port: 5001 } }),
    'http://127.0.0.1:5001/demo-greetings/us-central1',
  );
  assert.equal(functionsBase('acme-prod', null), 'https://us-central1-acme-prod.cloudfunctions.net');
});

test('each watch mark is reported once, and the end is 100 %', () => {
  const reported = new Set();
  assert.deepEqual(newMarks(reported, 1, 8), []);
  assert.deepEqual(newMarks(reported, 4.1, 8), [25, 50]);
  for (const mark of [25, 50]) reported.add(mark);
  assert.deepEqual(newMarks(reported, 4.2, 8), []);
  assert.deepEqual(newMarks(reported, 7.9, 8), [75, 100]); // the last frame falls short of 8 s
  assert.deepEqual(newMarks(new Set(), 3, Number.NaN), []); // no duration yet
});

test('a viewer keeps one client id for the session', () => {
  const items = new Map();
  const storage = { getItem: (k) => items.get(k) ?? null, setItem: (k, v) => items.set(k, v) };
  const id = clientId(storage, () => new Uint8Array(16).fill(171));
  assert.equal(id, 'ab'.repeat(16));
  assert.equal(clientId(storage, () => new Uint8Array(16)), id);
  const refusing = { getItem: () => null, setItem: () => { throw new Error('QuotaExceededError'); } };
  assert.match(clientId(refusing), /^[0-9a-f]{32}$/);
});

// A fetch that answers from `script` in turn: a status, or 'offline' for a network failure.
function scripted(script) {
  const calls = [];
  const fetchFn = async (url, init) => {
    calls.push([url, init]);
    const next = script[calls.length - 1];
    if (next === 'offline') throw new TypeError('Failed to fetch');
    return { status: next };
  };
  return { calls, fetchFn };
}

test('a busy or unreachable function is asked again, after growing pauses', async () => {
  const { calls, fetchFn } = scripted(['offline', 503, 500, 200]);
  const slept = [];
  const response = await fetchPatiently(fetchFn, '/share?s=x', { cache: 'no-store' }, {
    sleep: async (ms) => { slept.push(ms); },
  });
  assert.equal(response.status, 200);
  assert.equal(calls.length, 4);
  assert.deepEqual(calls[3], ['/share?s=x', { cache: 'no-store' }]);
  assert.deepEqual(slept, RETRY_DELAYS_MS);
});

test('an answer that another ask cannot change is the page\'s at once', async () => {
  for (const status of [200, 404, 410, 400]) {
    const { calls, fetchFn } = scripted([status, 200]);
    const response = await fetchPatiently(fetchFn, '/share', {}, { sleep: async () => {} });
    assert.equal(response.status, status);
    assert.equal(calls.length, 1);
  }
});

test('after the last pause, the last answer or failure is the page\'s', async () => {
  const busy = scripted([503, 503, 503, 503, 200]);
  const response = await fetchPatiently(busy.fetchFn, '/share', {}, { sleep: async () => {} });
  assert.equal(response.status, 503);
  assert.equal(busy.calls.length, RETRY_DELAYS_MS.length + 1);
  const offline = scripted(['offline', 'offline', 'offline', 'offline']);
  await assert.rejects(
    fetchPatiently(offline.fetchFn, '/share', {}, { sleep: async () => {} }),
    /Failed to fetch/,
  );
});

test('a video that failed to load is tried again after each delay, then the viewer is told', () => {
  const waits = [1, 2, 3, 4].map((failures) => mediaRetryDelay(failures));
  assert.deepEqual(waits, [...RETRY_DELAYS_MS, null]);
  assert.equal(mediaRetryDelay(0), null);
  assert.equal(mediaRetryDelay(1, []), null);
});
