// The batch form's draft (web/src/draft.js), without a browser: what is kept, what is dropped,
// and a storage that refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  clearDraft, draftFromValues, draftKey, isEmptyDraft, loadDraft, parseDraft, saveDraft,
} from '../src/draft.js';
import { memoryStorage } from './memory-storage.mjs';

const DEFAULTS = {
  greetingEnd: '1.5', names: '', greetingText: 'Hey {firstName},', followingText: '', voice: 'piper:joe', voiceId: '',
};

test('only what differs from the form\'s defaults is a draft', () => {
  assert.deepEqual(draftFromValues({ ...DEFAULTS }, DEFAULTS), {});
  assert.ok(isEmptyDraft(draftFromValues({ ...DEFAULTS }, DEFAULTS)));
  assert.deepEqual(
    draftFromValues({ ...DEFAULTS, names: 'Anna Smith\nBen', voice: 'clone', greetingEnd: '' }, DEFAULTS),
    { names: 'Anna Smith\nBen', voice: 'clone', greetingEnd: '' },
  );
  // Anything but the known text fields is never kept (the video file above all).
  assert.deepEqual(draftFromValues({ ...DEFAULTS, video: 'x.mp4', names: 'A' }, DEFAULTS), { names: 'A' });
});

test('a CSV\'s names, first names and pronunciations round-trip through storage', () => {
  const storage = memoryStorage();
  const csv = {
    source: 'prospects.csv',
    names: ['Siobhan Kelly', 'Ben Jones'],
    firstNames: [undefined, 'Benny'],
    pronunciations: ['Sheh-VAWN', undefined],
    skipped: [{ where: 'prospects.csv line 4', reason: 'blank name' }],
  };
  const draft = draftFromValues({ ...DEFAULTS, followingText: 'I saw your team is hiring', csv }, DEFAULTS);
  assert.equal(saveDraft(storage, 'u1', draft), true);
  const back = loadDraft(storage, 'u1');
  assert.deepEqual(back, { followingText: 'I saw your team is hiring', csv });
  assert.equal(loadDraft(storage, 'u2'), null, 'one draft per user');
});

test('an empty draft removes what was stored; clearing removes it too', () => {
  const storage = memoryStorage();
  saveDraft(storage, 'u1', { names: 'A' });
  assert.ok(storage.items.has(draftKey('u1')));
  assert.equal(saveDraft(storage, 'u1', {}), false);
  assert.ok(!storage.items.has(draftKey('u1')));
  saveDraft(storage, 'u1', { names: 'A' });
  clearDraft(storage, 'u1');
  assert.equal(loadDraft(storage, 'u1'), null);
});

test('what was stored is checked, never trusted', () => {
  assert.equal(parseDraft('not json'), null);
  assert.equal(parseDraft('[1,2]'), null);
  assert.equal(parseDraft('{}'), null);
  assert.deepEqual(parseDraft(JSON.stringify({ names: 'A', voice: 3, evil: '<img>', greetingEnd: null })), { names: 'A' });
  // A CSV whose lists disagree is dropped, the rest kept.
  const bad = { source: 'x.csv', names: ['A', 'B'], firstNames: [null], pronunciations: [null, null] };
  assert.deepEqual(parseDraft(JSON.stringify({ names: 'A', csv: bad })), { names: 'A' });
  assert.deepEqual(parseDraft(JSON.stringify({ csv: { source: 'x.csv', names: [1] } })), null);
});

test('a storage that refuses: no draft, no error', () => {
  const broken = {
    getItem() { throw new Error('SecurityError'); },
    setItem() { throw new Error('SecurityError'); },
    removeItem() { throw new Error('SecurityError'); },
  };
  assert.equal(loadDraft(broken, 'u1'), null);
  assert.equal(saveDraft(broken, 'u1', { names: 'A' }), false);
  clearDraft(broken, 'u1');
});

test('a CSV too big for the storage is left out, the typed fields kept', () => {
  const storage = memoryStorage({ limit: 200 });
  const names = Array.from({ length: 50 }, (_, i) => `Name ${i}`);
  const csv = { source: 'big.csv', names, firstNames: names.map(() => undefined), pronunciations: names.map(() => undefined), skipped: [] };
  assert.equal(saveDraft(storage, 'u1', { names: 'A', csv }), true);
  assert.deepEqual(loadDraft(storage, 'u1'), { names: 'A' });
});

test('a CSV\'s data rows and its text are kept for the batch\'s export; too big, the text goes first', () => {
  const csv = {
    source: 'p.csv', names: ['Ann', 'Bo'], firstNames: [undefined, undefined],
    pronunciations: [undefined, undefined], skipped: [], rows: [0, 2], text: 'name\nAnn\n\nBo\n',
  };
  const storage = memoryStorage();
  assert.equal(saveDraft(storage, 'u1', { csv }), true);
  assert.deepEqual(loadDraft(storage, 'u1'), { csv });
  // Rows that do not match the names are dropped, the names kept.
  assert.deepEqual(parseDraft(JSON.stringify({ csv: { ...csv, rows: [0] } })).csv.rows, undefined);
  const small = memoryStorage({ limit: JSON.stringify({ csv: { ...csv, text: undefined } }).length + 20 });
  const long = { ...csv, text: 'x'.repeat(5000) };
  assert.equal(saveDraft(small, 'u1', { csv: long }), true);
  const { text, ...withoutText } = csv;
  assert.deepEqual(loadDraft(small, 'u1'), { csv: withoutText });
});
