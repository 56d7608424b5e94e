// Edit and retry's checks, mirroring flows/lifecycle.py edit_fields (run: node --test web/tests/).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { canEdit, changesFrom, sameBatchFailures } from '../src/edit-retry.js';

const failed = (code, extra = {}) => ({ id: extra.id ?? 'j1', status: 'failed', error: { code }, ...extra });

test('only failures an edit can fix offer Edit and retry', () => {
  assert.equal(canEdit(failed('greeting-too-long')), true);
  assert.equal(canEdit(failed('invalid-greeting-text')), true);
  assert.equal(canEdit(failed('input-not-video')), false); // a new upload, not an edit
  assert.equal(canEdit(failed('tts-unavailable')), false); // Retry, as it is
  assert.equal(canEdit({ status: 'completed', error: { code: 'greeting-too-long' } }), false);
});

test('the changes are what differs from the job, checked as the rules check them', () => {
  const job = { greetingEndSecond: 0.3, greetingText: 'Hey {firstName},', firstName: 'Maximilian' };
  assert.deepEqual(changesFrom({ greetingEnd: '2.4', greetingText: 'Hey {firstName},', firstName: 'Max' }, job), {
    changes: { greetingEndSecond: 2.4, firstName: 'Max' },
  });
  // Emptied: back to the default (the end found from the recording, the default text).
  assert.deepEqual(changesFrom({ greetingEnd: '', greetingText: '' }, job), {
    changes: { greetingEndSecond: null, greetingText: null },
  });
  assert.deepEqual(changesFrom({ greetingEnd: '0.30', greetingText: 'Hey {firstName},' }, job).field, 'greetingEnd');
  assert.match(changesFrom({ greetingEnd: '0.3', greetingText: 'Hey {firstName},' }, job).error, /Change something first/);
  assert.match(changesFrom({ greetingEnd: '10.5' }, job).error, /at most 10 seconds/);
  assert.match(changesFrom({ greetingEnd: '0' }, job).error, /more than 0/);
  assert.match(changesFrom({ greetingEnd: 'soon' }, job).error, /more than 0/);
  assert.equal(changesFrom({ greetingEnd: '0.3', greetingText: 'x'.repeat(201) }, job).field, 'greetingText');
  assert.equal(changesFrom({ greetingEnd: '0.3', greetingText: 'Hey {firstName},', firstName: 'x'.repeat(101) }, job).field, 'firstName');
  assert.deepEqual(changesFrom({ greetingEnd: '0.3', greetingText: 'Hey {firstName},', pronunciation: 'Maks' }, job), {
    changes: { pronunciation: 'Maks' },
  });
});

test('one edit reaches every failed job of the batch that an edit can fix, this one first', () => {
  const me = failed('greeting-too-long', { id: 'a', batchId: 'b1' });
  const jobs = [
    failed('greeting-too-long', { id: 'c', batchId: 'b1' }),
    me,
    failed('input-not-video', { id: 'd', batchId: 'b1' }),
    failed('greeting-too-long', { id: 'e', batchId: 'b2' }),
    { id: 'f', batchId: 'b1', status: 'completed' },
  ];
  assert.deepEqual(sameBatchFailures(me, jobs).map((j) => j.id), ['a', 'c']);
  assert.deepEqual(sameBatchFailures(failed('greeting-too-long', { id: 'z' }), jobs).map((j) => j.id), ['z']);
});
