// What a job row says about Retry and about the answer to a Cancel or Retry (web/src/status.js).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { canRetry, requestAnswerText } from '../src/status.js';

test('Retry is offered only for a failure marked retryable', () => {
  assert.equal(canRetry({ status: 'failed', error: { code: 'rate-limited', retryable: true } }), true);
  assert.equal(canRetry({ status: 'failed', error: { code: 'tts-unavailable', retryable: true } }), true);
  assert.equal(canRetry({ status: 'failed', error: { code: 'invalid-voice', retryable: false } }), false);
  assert.equal(canRetry({ status: 'failed', error: { code: 'internal' } }), false, 'no flag: no Retry');
  assert.equal(canRetry({ status: 'failed' }), false);
  assert.equal(canRetry({ status: 'pending', error: { code: 'rate-limited', retryable: true } }), false);
  assert.equal(canRetry({ status: 'completed' }), false);
  assert.equal(canRetry(null), false);
  assert.equal(canRetry({ status: 'failed', error: { retryable: 'true' } }), false);
});

test('a cancel\'s answer', () => {
  assert.equal(requestAnswerText('cancel', { outcome: 'cancelled', message: 'The job was cancelled.' }), 'The job was cancelled.');
  assert.equal(
    requestAnswerText('cancel', { outcome: 'refused', message: 'The job had already finished.' }),
    'The job had already finished, so there was nothing to cancel.',
  );
});

test('a retry\'s answer counts attempts as the row\'s stages do', () => {
  assert.equal(requestAnswerText('retry', { outcome: 'retrying', message: 'Attempt 1 started.' }), 'Retrying: this is attempt 2.');
  assert.equal(
    requestAnswerText('retry', { outcome: 'retrying', message: "Attempt 1 started with the greeting ending at 2.4 s, the first name 'Max'." }),
    "Retrying with the greeting ending at 2.4 s, the first name 'Max': this is attempt 2.",
  );
  assert.equal(requestAnswerText('retry', { outcome: 'retrying', message: '' }), 'Retrying.');
  assert.equal(
    requestAnswerText('retry', { outcome: 'refused', message: 'You may start 1 new jobs a minute, and this job would go over that. Retry it in 58 s.' }),
    'The retry was refused: You may start 1 new jobs a minute, and this job would go over that. Retry it in 58 s.',
  );
  assert.equal(requestAnswerText('retry', { outcome: 'refused' }), 'The retry was refused.');
});

test('an answer not known here is shown as the server wrote it', () => {
  assert.equal(requestAnswerText('cancel', { outcome: 'refused-later', message: 'Something new.' }), 'Something new.');
  assert.equal(requestAnswerText('retry', { outcome: 'queued' }), 'The request was answered: queued.');
  assert.equal(requestAnswerText('retry', {}), '');
  assert.equal(requestAnswerText('retry', null), '');
});
