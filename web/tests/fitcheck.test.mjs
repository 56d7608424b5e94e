// The fit check before a batch (web/src/fitcheck-view.js), without a browser: the fitChecks
// documents a batch becomes, held to what firestore.rules let a client write, and what an answer
// says, in the words the page shows (greetings/commands/fit.py says the same in the CLI).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  FIT_CHECK_FIELDS, FIT_CHECK_NAMES, PROSPECT_FIELDS, fitCheckDocuments, fitHow, fitProblem,
  fitReport, fitWaitMs, fitWords, mergeChecks, suggestionLabel,
} from '../src/fitcheck-view.js';

// The rules' own lists for fitChecks: what a created document must have, and may have.
const rules = readFileSync(new URL('../../firestore.rules', import.meta.url), 'utf8');
const block = rules.slice(rules.indexOf('match /fitChecks/{checkId}'));
const listAfter = (call) => {
  const inside = block.slice(block.indexOf(call) + call.length, block.indexOf(']', block.indexOf(call)));
  return [...inside.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1]);
};
const REQUIRED = listAfter('keys().hasAll([');
const ALLOWED = listAfter('keys().hasOnly([');

const UID = 'u1';
const VIDEO = `user-uploads/${UID}/${'a'.repeat(64)}.mp4`;
const BATCH = {
  names: ['Anna Smith', 'Dr. Siobhan Kelly', 'Ben Jones'],
  firstNames: [undefined, 'Siobhan', undefined],
  pronunciations: [undefined, 'Sheh-VAWN', undefined],
  voiceId: 'piper:joe',
  greetingEndSecond: 0.55,
  greetingText: 'Hi {firstName},',
  followingText: 'I saw your team is hiring',
};

/** Every key of every object in `value`, at any depth, whose value is undefined. */
function undefinedPaths(value, path = '') {
  if (value === undefined) return [path];
  if (!value || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => undefinedPaths(v, `${path}.${k}`));
}

test('the rules were read: the lists this module is held to', () => {
  assert.deepEqual(REQUIRED, ['userId', 'inputVideo', 'voiceId', 'prospects', 'status', 'createdAt']);
  assert.deepEqual([...ALLOWED].sort(), [...FIT_CHECK_FIELDS].sort());
});

test('a batch is one document with the fields its jobs would get, and the names in order', () => {
  const [document, ...more] = fitCheckDocuments(UID, VIDEO, BATCH);
  assert.equal(more.length, 0);
  assert.deepEqual(document, {
    userId: UID,
    inputVideo: VIDEO,
    voiceId: 'piper:joe',
    status: 'pending',
    greetingEndSecond: 0.55,
    greetingText: 'Hi {firstName},',
    followingText: 'I saw your team is hiring',
    prospects: [
      { prospectName: 'Anna Smith' },
      { prospectName: 'Dr. Siobhan Kelly', firstName: 'Siobhan', pronunciation: 'Sheh-VAWN' },
      { prospectName: 'Ben Jones' },
    ],
  });
  // With the createdAt the writer adds: all the rules require, nothing they do not allow.
  const keys = [...Object.keys(document), 'createdAt'];
  assert.deepEqual(REQUIRED.filter((k) => !keys.includes(k)), []);
  assert.deepEqual(keys.filter((k) => !ALLOWED.includes(k)), []);
  for (const prospect of document.prospects) {
    assert.deepEqual(Object.keys(prospect).filter((k) => !PROSPECT_FIELDS.includes(k)), []);
  }
});

test('what the form left empty is left out, never written as undefined', () => {
  const bare = {
    names: ['Anna Smith'], firstNames: [undefined], pronunciations: [undefined], voiceId: 'clone',
    greetingEndSecond: undefined, greetingText: undefined, followingText: undefined,
  };
  const [document] = fitCheckDocuments(UID, VIDEO, bare);
  assert.deepEqual(document, {
    userId: UID, inputVideo: VIDEO, voiceId: 'clone', status: 'pending', prospects: [{ prospectName: 'Anna Smith' }],
  });
  assert.deepEqual(undefinedPaths(document), []);
  // No lists of first names or pronunciations at all (typed names), or an end that is no number.
  const [typed] = fitCheckDocuments(UID, VIDEO, { names: ['A B'], voiceId: 'clone', greetingEndSecond: Number.NaN });
  assert.deepEqual(typed.prospects, [{ prospectName: 'A B' }]);
  assert.equal('greetingEndSecond' in typed, false);
  assert.deepEqual(undefinedPaths(typed), []);
});

test('more names than the rules take in one document are checked in parts, in order', () => {
  const names = Array.from({ length: FIT_CHECK_NAMES * 2 + 5 }, (_, i) => `Name ${i}`);
  const documents = fitCheckDocuments(UID, VIDEO, { ...BATCH, names, firstNames: [], pronunciations: [] });
  assert.deepEqual(documents.map((d) => d.prospects.length), [400, 400, 5]);
  assert.deepEqual(documents.flatMap((d) => d.prospects.map((p) => p.prospectName)), names);
  for (const d of documents) assert.equal(d.greetingEndSecond, 0.55);
  assert.equal(FIT_CHECK_NAMES, 400);
});

test('what fitting took, as the CLI says it', () => {
  assert.equal(fitHow({ providerSpeed: 1.1, pauseUsedSecond: 0.2, tempo: 1.05 }), 'spoken 1.10x faster, uses 0.20 s of the pause, played 1.05x');
  assert.equal(fitHow({ providerSpeed: 1.0, pauseUsedSecond: 0.25, tempo: 1.0 }), 'uses 0.25 s of the pause');
  // A step that would read 1.00x or 0.00 s is no step.
  assert.equal(fitHow({ providerSpeed: 1.001, pauseUsedSecond: 0.001, tempo: 1.004 }), '');
  assert.equal(fitHow({}), '');
});

test('each verdict in words', () => {
  assert.equal(fitWords({ verdict: 'fits', tempo: 1 }), 'Fits');
  assert.equal(fitWords({ verdict: 'fitted', providerSpeed: 1.1, pauseUsedSecond: 0.3 }), 'Fits (spoken 1.10x faster, uses 0.30 s of the pause)');
  assert.equal(fitWords({ verdict: 'fitted', tempo: 1 }), 'Fits');
  assert.equal(fitWords({ verdict: 'too-long', needsGreetingEndSecond: 1.8 }), 'Too long: needs the greeting to end at 1.80 s or later');
  assert.equal(fitWords({ verdict: 'too-long' }), 'Too long for the greeting');
  assert.equal(
    fitWords({ verdict: 'invalid', error: { code: 'invalid-name', message: 'The name has characters that cannot be spoken.', retryable: false } }),
    'Cannot be made: The name has characters that cannot be spoken.',
  );
  assert.equal(fitWords({ verdict: 'invalid', error: { code: 'invalid-voice' } }), 'Cannot be made: invalid-voice');
  assert.equal(fitWords({ verdict: 'invalid' }), 'Cannot be made');
  assert.equal(fitWords({ verdict: 'maybe' }), 'Not checked (the check answered “maybe”)');
});

const fits = (prospectName) => ({ prospectName, verdict: 'fits', greetingSecond: 0.5, tempo: 1, providerSpeed: 1, pauseUsedSecond: 0 });
const tooLong = (prospectName, needs) => ({ prospectName, verdict: 'too-long', needsGreetingEndSecond: needs, tempo: 1.25 });

test('all fit: nothing to ask, the jobs go', () => {
  const report = fitReport({
    greetingEndSecond: 1.5,
    results: [fits('Anna Smith'), { prospectName: 'Ben Jones', verdict: 'fitted', pauseUsedSecond: 0.2 }],
    counts: { fits: 1, fitted: 1, 'too-long': 0, invalid: 0 },
    maxTempo: 1.25,
  }, { count: 2 });
  assert.equal(report.allFit, true);
  assert.equal(report.failing, 0);
  assert.deepEqual(report.summary, []);
  assert.deepEqual(report.rows.map((r) => r.words), ['Fits', 'Fits (uses 0.20 s of the pause)']);
});

test('names too long: the table, the summary, and the one-click fix', () => {
  const check = {
    greetingEndSecond: 0.55,
    results: [fits('Al Li'), tooLong('Dr. Maximilian Oyelaran-Whitfield', 1.8), fits('Ana Kovač'), tooLong('Mr. Bartholomew Featherstonehaugh III', 2.1)],
    counts: { fits: 2, fitted: 0, 'too-long': 2, invalid: 0 },
    suggestedGreetingEndSecond: 3.13,
    maxTempo: 1.25,
  };
  const report = fitReport(check, { count: 4, maxEnd: 7 });
  assert.equal(report.allFit, false);
  assert.equal(report.title, 'Not every name fits the greeting');
  assert.equal(report.caption, 'How each name fits the greeting that ends at 0.55 s');
  assert.deepEqual(report.rows, [
    { name: 'Al Li', verdict: 'fits', words: 'Fits' },
    { name: 'Dr. Maximilian Oyelaran-Whitfield', verdict: 'too-long', words: 'Too long: needs the greeting to end at 1.80 s or later' },
    { name: 'Ana Kovač', verdict: 'fits', words: 'Fits' },
    { name: 'Mr. Bartholomew Featherstonehaugh III', verdict: 'too-long', words: 'Too long: needs the greeting to end at 2.10 s or later' },
  ]);
  assert.deepEqual(report.summary, [
    '2 of 4 names do not fit the greeting that ends at 0.55 s.',
    'Every name fits if the greeting ends at 3.13 s, the next pause in your recording (the new greeting replaces the words up to it).',
    'If you create them anyway, 2 of the 4 videos will fail.',
  ]);
  assert.deepEqual(report.suggestion, { value: 3.13, label: 'Use 3.13 s for all and create 4 videos' });
  assert.equal(report.editField, 'greeting-end');
});

test('one name of forty, and a suggestion too close to the video\'s end is not offered', () => {
  const results = [tooLong('Maximilian Oyelaran-Whitfield', 1.2), ...Array.from({ length: 39 }, (_, i) => fits(`N ${i}`))];
  const near = fitReport({ greetingEndSecond: 0.3, results, suggestedGreetingEndSecond: 7.5 }, { count: 40, maxEnd: 7 });
  assert.equal(near.summary[0], '1 of 40 names does not fit the greeting that ends at 0.30 s.');
  assert.equal(near.suggestion, null);
  assert.equal(near.summary[1], 'Every name fits if the greeting ends at 7.50 s, but that is too close to the end of your video: use a shorter greeting text.');
  assert.equal(near.summary[2], 'If you create them anyway, 1 of the 40 videos will fail.');
  const none = fitReport({ greetingEndSecond: 0.3, results }, { count: 40 });
  assert.equal(none.suggestion, null);
  assert.equal(none.summary[1], 'No later pause in the first 10 s of your recording leaves room for it: use a shorter greeting text.');
  assert.equal(suggestionLabel(3.1, 1), 'Use 3.10 s for all and create 1 video');
});

test('names that cannot be made are said to fail, and why', () => {
  const invalid = { prospectName: 'Eve', verdict: 'invalid', error: { code: 'invalid-voice', message: "espeak-ng has no voice 'espeak:nope'", retryable: false } };
  const report = fitReport({ greetingEndSecond: 1.5, results: [invalid, fits('Bo')] }, { count: 2 });
  assert.equal(report.title, 'Not every video can be made');
  assert.deepEqual(report.summary, [
    '1 of 2 names cannot be made: its video would fail, for the reason given.',
    'If you create them anyway, 1 of the 2 videos will fail.',
  ]);
  assert.equal(report.rows[0].words, "Cannot be made: espeak-ng has no voice 'espeak:nope'");
  assert.equal(report.editField, 'names');
  // Both kinds: the suggestion is about the ones too long only.
  const both = fitReport({ greetingEndSecond: 0.5, results: [invalid, tooLong('Maximilian', 1), tooLong('Bartholomew', 1.1)], suggestedGreetingEndSecond: 1.9 }, { count: 3 });
  assert.deepEqual(both.summary, [
    '2 of 3 names do not fit the greeting that ends at 0.50 s.',
    '1 of 3 names cannot be made: its video would fail, for the reason given.',
    'The names that are too long fit if the greeting ends at 1.90 s, the next pause in your recording (the new greeting replaces the words up to it).',
    'If you create them anyway, 3 of the 3 videos will fail.',
  ]);
});

test('an answer missing names, or none at all, is not "all fit"', () => {
  const short = fitReport({ greetingEndSecond: 1, results: [fits('A')] }, { count: 2 });
  assert.equal(short.allFit, false);
  assert.equal(short.failing, 1);
  assert.match(short.summary.join(' '), /1 of 2 names got no answer\./);
  assert.equal(fitReport({ results: [] }, { count: 0 }).allFit, false);
  assert.equal(fitReport(null, { count: 1 }).allFit, false);
});

test('a check in parts answers as one', () => {
  const merged = mergeChecks([
    { greetingEndSecond: 0.5, results: [fits('A'), tooLong('B', 1.2)], suggestedGreetingEndSecond: 1.4, maxTempo: 1.25, counts: {} },
    { greetingEndSecond: 0.5, results: [tooLong('C', 2.5)], suggestedGreetingEndSecond: 3.1, maxTempo: 1.25 },
    { greetingEndSecond: 0.5, results: [fits('D')], maxTempo: 1.25 },
  ]);
  assert.deepEqual(merged.results.map((r) => r.prospectName), ['A', 'B', 'C', 'D']);
  assert.equal(merged.suggestedGreetingEndSecond, 3.1, 'the latest part\'s pause fits them all');
  assert.equal(merged.greetingEndSecond, 0.5);
  assert.equal(merged.maxTempo, 1.25);
  // A part whose long names have no pause: no suggestion for the whole.
  const none = mergeChecks([
    { greetingEndSecond: 0.5, results: [tooLong('B', 1.2)], suggestedGreetingEndSecond: 1.4 },
    { greetingEndSecond: 0.5, results: [tooLong('C', 12)] },
  ]);
  assert.equal('suggestedGreetingEndSecond' in none, false);
  // All fit: no suggestion, and none needed.
  assert.equal('suggestedGreetingEndSecond' in mergeChecks([{ greetingEndSecond: 1, results: [fits('A')] }]), false);
});

test('a check that failed or did not answer: said in words, with the way on', () => {
  const failed = fitProblem({ status: 'failed', error: { code: 'rate-limited', message: 'You may start 1 new jobs a minute, and this job would go over that. Retry it in 58 s.' } }, 90_000);
  assert.equal(failed.title, 'The fit check could not run');
  assert.equal(failed.summary[0], 'The fit check failed (rate-limited): You may start 1 new jobs a minute, and this job would go over that. Retry it in 58 s.');
  assert.match(failed.summary[1], /^You can create the videos anyway/);
  assert.equal(failed.rows, null);
  assert.equal(failed.suggestion, null);
  assert.equal(failed.allFit, false);
  assert.equal(fitProblem({ status: 'failed', error: {} }, 90_000).summary[0], 'The fit check failed.');
  const late = fitProblem({ status: 'timeout' }, 90_000);
  assert.equal(late.title, 'The fit check did not answer');
  assert.equal(late.summary[0], 'The check of how each name fits the greeting had no answer after 90 s.');
});

test('the wait grows with the list', () => {
  assert.equal(fitWaitMs(1), 90_000);
  assert.equal(fitWaitMs(40), 90_000);
  assert.equal(fitWaitMs(400), 180_000);
});
