// What the Webhooks section says about endpoints and their deliveries (web/src/webhooks-view.js),
// without a browser: states, statuses, attempts, errors in words, the form's checks, refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  SECRET_NOTICE, attemptErrorWords, attemptsText, deliveryErrorWords, deliveryStatus, deliveryView,
  endpointState, endpointView, eventsText, formatClock, lastAttempt, millisOf, readEndpointForm,
  refusalMessage, sortEndpoints, summaryText,
} from '../src/webhooks-view.js';

const UTC = { timeZone: 'UTC', now: Date.parse('2026-12-05T14:00:00Z') };
// A Firestore Timestamp, as the SDK hands it over.
const ts = (iso) => ({ toMillis: () => Date.parse(iso) });

test('times come from Timestamps, Dates, numbers and ISO strings; anything else is none', () => {
  assert.equal(millisOf(ts('2026-12-05T14:03:00Z')), Date.parse('2026-12-05T14:03:00Z'));
  assert.equal(millisOf(new Date(5)), 5);
  assert.equal(millisOf(7), 7);
  assert.equal(millisOf('2026-12-05T14:03:00Z'), Date.parse('2026-12-05T14:03:00Z'));
  for (const odd of [null, undefined, '', 'soon', NaN, {}, new Date('x')]) assert.equal(millisOf(odd), null, String(odd));
});

test('a time reads HH:MM the same day, with the date on another', () => {
  assert.equal(formatClock(ts('2026-12-05T14:03:59Z'), UTC), '14:03');
  assert.equal(formatClock(ts('2026-12-05T09:05:00Z'), UTC), '09:05');
  assert.equal(formatClock(ts('2026-12-06T00:10:00Z'), UTC), '6 Dec 00:10');
  assert.equal(formatClock(ts('2026-12-04T23:59:00Z'), UTC), '4 Dec 23:59');
  assert.equal(formatClock(null, UTC), '');
  // In the viewer's own zone: the same instant, another hour.
  assert.equal(formatClock(ts('2026-12-05T14:03:00Z'), { ...UTC, timeZone: 'Europe/Berlin' }), '15:03');
});

test('an endpoint is active, failing since a time, or disabled with its reason', () => {
  assert.deepEqual(endpointState({ disabled: false }, UTC), { state: 'active', words: 'Active', hint: '' });
  const failing = endpointState({ disabled: false, failingSince: ts('2026-12-05T13:40:00Z') }, UTC);
  assert.equal(failing.state, 'failing');
  assert.equal(failing.words, 'Active, but its deliveries have been failing since 13:40.');
  assert.match(failing.hint, /about a day/);
  const disabled = endpointState({
    disabled: true,
    disabledAt: ts('2026-12-05T12:00:00Z'),
    disabledReason: 'Every delivery has failed since 2026-12-04 11:00 UTC, for more than a day.',
    failingSince: ts('2026-12-04T11:00:00Z'),
  }, UTC);
  assert.equal(disabled.state, 'disabled');
  assert.equal(disabled.words, 'Disabled since 12:00: Every delivery has failed since 2026-12-04 11:00 UTC, for more than a day.');
  assert.match(disabled.hint, /press "Enable again"/);
  assert.equal(endpointState({ disabled: true }, UTC).words, 'Disabled: no reason was recorded.');
  // Only `true` disables: the worker writes a bool.
  assert.equal(endpointState({ disabled: 'yes' }, UTC).state, 'active');
  assert.equal(endpointState(null, UTC).state, 'active');
});

test('an endpoint row: its URL, its events in their order, when it was added', () => {
  const view = endpointView({
    url: 'https://hooks.example.com/in', events: ['video.watched', 'video.ready'], createdAt: ts('2026-12-05T10:00:00Z'),
  }, UTC);
  assert.equal(view.url, 'https://hooks.example.com/in');
  assert.equal(view.events, 'Events: video.ready, video.watched');
  assert.equal(view.created, 'Added 10:00');
  assert.equal(view.state, 'active');
  assert.equal(endpointView({}, UTC).events, 'Events: none');
  assert.equal(eventsText(['video.failed', 'video.someday']), 'video.failed, video.someday');
  assert.equal(eventsText('video.ready'), '');
});

test('attempts are counted in words, and the latest is the highest number', () => {
  assert.equal(attemptsText({ attempts: [] }), 'No attempt yet');
  assert.equal(attemptsText({}), 'No attempt yet');
  assert.equal(attemptsText({ attempts: [{ number: 1 }] }), '1 attempt');
  assert.equal(attemptsText({ attempts: [{ number: 1 }, { number: 2 }, { number: 3 }] }), '3 attempts');
  // ArrayUnion keeps the order they were added in, but nothing here relies on it.
  assert.equal(lastAttempt({ attempts: [{ number: 2, statusCode: 500 }, { number: 1, error: 'timed out' }] }).number, 2);
  assert.equal(lastAttempt({ attempts: [] }), null);
});

test('a delivery\'s status: delivered at, retrying at, failed, waiting', () => {
  assert.deepEqual(
    deliveryStatus({ status: 'delivered', deliveredAt: ts('2026-12-05T14:03:00Z') }, UTC),
    { status: 'delivered', words: 'Delivered at 14:03' },
  );
  assert.deepEqual(
    deliveryStatus({ status: 'retrying', nextAttemptAt: ts('2026-12-05T14:08:00Z') }, UTC),
    { status: 'retrying', words: 'Retrying at 14:08' },
  );
  assert.equal(deliveryStatus({ status: 'retrying', nextAttemptAt: ts('2026-12-06T00:08:00Z') }, UTC).words, 'Retrying at 6 Dec 00:08');
  assert.equal(deliveryStatus({ status: 'failed', updatedAt: ts('2026-12-05T13:00:00Z') }, UTC).words, 'Failed (gave up at 13:00)');
  assert.equal(deliveryStatus({ status: 'failed' }, UTC).words, 'Failed');
  assert.equal(deliveryStatus({ status: 'pending' }, UTC).words, 'Waiting to be sent');
  assert.equal(deliveryStatus({}, UTC).words, 'Waiting to be sent');
});

test('an attempt\'s failure in words the owner can act on', () => {
  assert.equal(attemptErrorWords({ statusCode: 200 }), '');
  assert.equal(attemptErrorWords({ statusCode: 500 }), 'The receiver answered HTTP 500, an error on its side.');
  assert.equal(attemptErrorWords({ statusCode: 404 }), 'The receiver answered HTTP 404: a refusal, so it is not tried again.');
  assert.equal(attemptErrorWords({ statusCode: 429 }), 'The receiver answered HTTP 429: not now.');
  assert.match(attemptErrorWords({ statusCode: 301 }), /redirects are not followed/);
  assert.equal(attemptErrorWords({ error: 'timed out: the attempt\'s time is up' }), 'The receiver did not answer in time (it has 5 s).');
  assert.equal(attemptErrorWords({ error: 'timed out' }), 'The receiver did not answer in time (it has 5 s).');
  assert.equal(
    attemptErrorWords({ error: 'refused: hooks.example.com resolves to 10.0.0.7 is a private address' }),
    'The URL is not allowed: hooks.example.com resolves to 10.0.0.7 is a private address.',
  );
  assert.equal(attemptErrorWords({ error: 'ConnectError: [Errno 111] Connection refused' }), 'Nothing answered at that address (connection refused).');
  assert.equal(attemptErrorWords({ error: 'ConnectError: [Errno -2] Name or service not known' }), 'The host name does not resolve.');
  assert.equal(attemptErrorWords({ error: 'OSError: nowhere.example resolves to no address' }), 'The host name does not resolve.');
  assert.equal(attemptErrorWords({ error: 'RemoteProtocolError: Server disconnected without sending a response.' }), 'Could not reach the receiver: Server disconnected without sending a response.');
  assert.equal(attemptErrorWords({ error: 'something odd' }), 'Something odd.');
  assert.equal(attemptErrorWords({}), '');
  assert.equal(attemptErrorWords(null), '');
});

test('a delivery\'s error: the last attempt\'s, and why it was given up without one', () => {
  const attempts = [{ number: 1, statusCode: 500 }, { number: 2, error: 'timed out' }];
  assert.equal(deliveryErrorWords({ status: 'retrying', attempts }), 'The receiver did not answer in time (it has 5 s).');
  assert.equal(deliveryErrorWords({ status: 'delivered', attempts }), '', 'delivered in the end: nothing to fix');
  assert.equal(deliveryErrorWords({ status: 'failed', attempts: [], endedReason: 'the endpoint is disabled' }), 'Not sent: the endpoint is disabled.');
  assert.equal(
    deliveryErrorWords({ status: 'failed', attempts: [{ number: 1, statusCode: 503 }], endedReason: 'the endpoint was deleted' }),
    'The receiver answered HTTP 503, an error on its side. Then it was given up: the endpoint was deleted.',
  );
  assert.equal(deliveryErrorWords({ status: 'pending', attempts: [] }), '');
});

test('a delivery line: the event, whom it is about, status, attempts, error', () => {
  const view = deliveryView({
    eventId: 'evt_1',
    eventType: 'video.ready',
    event: { type: 'video.ready', data: { jobId: 'j1', name: 'Wes Hook', status: 'completed' } },
    status: 'retrying',
    attempts: [{ number: 1, at: ts('2026-12-05T14:00:00Z'), statusCode: 502, durationMs: 40 }],
    nextAttemptAt: ts('2026-12-05T14:00:05Z'),
  }, UTC);
  assert.deepEqual(view, {
    event: 'video.ready',
    about: 'for Wes Hook',
    status: 'retrying',
    words: 'Retrying at 14:00',
    attempts: '1 attempt',
    error: 'The receiver answered HTTP 502, an error on its side.',
  });
  const bare = deliveryView({ event: { type: 'video.viewed', data: {} } }, UTC);
  assert.equal(bare.event, 'video.viewed');
  assert.equal(bare.about, '');
  assert.equal(bare.attempts, 'No attempt yet');
});

test('the summary says how many endpoints, and which need a look', () => {
  assert.equal(summaryText([]), 'Add an endpoint');
  assert.equal(summaryText([{ disabled: false }]), 'Your endpoint');
  assert.equal(summaryText([{}, {}]), 'Your 2 endpoints');
  assert.equal(
    summaryText([{ disabled: true }, { failingSince: ts('2026-12-05T13:00:00Z') }, {}]),
    'Your 3 endpoints (1 disabled, 1 failing)',
  );
});

test('endpoints list newest first; those without a time last, in id order', () => {
  const sorted = sortEndpoints([
    ['b', { createdAt: ts('2026-12-05T10:00:00Z') }],
    ['z', {}],
    ['a', { createdAt: ts('2026-12-05T11:00:00Z') }],
    ['c', null],
  ]);
  assert.deepEqual(sorted.map(([id]) => id), ['a', 'b', 'c', 'z']);
});

test('the form asks for a URL and at least one event; the server judges the URL', () => {
  assert.deepEqual(readEndpointForm({ url: '  ', events: ['video.ready'] }), { field: 'url', message: 'Enter the endpoint\'s URL (https://…).' });
  assert.deepEqual(readEndpointForm({ url: 'https://x.example/in', events: [] }), { field: 'events', message: 'Choose at least one event to send.' });
  assert.deepEqual(
    readEndpointForm({ url: ' https://x.example/in ', events: ['video.watched', 'video.ready', 'video.nope'] }),
    { url: 'https://x.example/in', events: ['video.ready', 'video.watched'] },
  );
  // Not https: still sent, so the server's own words say why.
  assert.deepEqual(readEndpointForm({ url: 'http://x.example/in', events: ['video.ready'] }), { url: 'http://x.example/in', events: ['video.ready'] });
});

test('a refusal goes next to what it is about, as a sentence', () => {
  assert.deepEqual(
    refusalMessage({ code: 'functions/invalid-argument', message: '10.0.0.1 is an internal address (10.0.0.1): webhooks go to public https URLs' }),
    { field: 'url', message: '10.0.0.1 is an internal address (10.0.0.1): webhooks go to public https URLs.' },
  );
  assert.deepEqual(refusalMessage({ code: 'functions/invalid-argument', message: 'the URL must use https' }), { field: 'url', message: 'The URL must use https.' });
  assert.equal(refusalMessage({ code: 'functions/invalid-argument', message: 'events must be a list of: video.ready' }).field, 'events');
  assert.deepEqual(refusalMessage({ code: 'functions/unauthenticated', message: 'sign in first' }), { field: null, message: 'Sign in again to add an endpoint.' });
  assert.deepEqual(refusalMessage({ code: 'functions/internal', message: 'INTERNAL' }), { field: null, message: 'The endpoint could not be added: INTERNAL.' });
  assert.deepEqual(refusalMessage(new Error('Failed to fetch')), { field: null, message: 'The endpoint could not be added: Failed to fetch.' });
});

test('the secret\'s notice says it once, in the words the page shows', () => {
  assert.equal(SECRET_NOTICE, 'Copy this secret now: it is not shown again. Verify each request with it (Standard Webhooks).');
});
