// What a completed job's card says about its delivery (web/src/delivery-view.js), the lists the
// page keeps for "Export CSV" (batch-sources.js) and the file it makes (batch-export.js). No
// browser.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { buildExport, exportBatch } from '../src/batch-export.js';
import { MAX_KEPT, loadSources, rememberBatch, sourceOf, sourcesKey } from '../src/batch-sources.js';
import {
  NOT_WATCHED, SHARING_STOPPED, agoWords, copyWords, deliveryOf, exportDoneText, exportFailedText,
  revokeAnswerText, thumbnailOf, viewersWords,
} from '../src/delivery-view.js';
import { memoryStorage } from './memory-storage.mjs';

const NOW = Date.parse('2026-05-01T12:00:00Z');
const at = (msAgo) => ({ toMillis: () => NOW - msAgo }); // a Firestore Timestamp, as the SDK gives it

const COMPLETED = {
  status: 'completed',
  prospectName: 'Anna Smith',
  downloadUrl: 'https://storage.test/a.mp4?sig=1',
  posterUrl: 'https://storage.test/a.jpg',
  thumbnailUrl: 'https://storage.test/a.gif',
  shareId: 'Zx9_shareid',
  shareUrl: 'https://demo.web.app/v/Zx9_shareid',
  views: 0,
  plays: 0,
  maxWatchedPercent: 0,
};

test('the viewers in words: nothing yet, then views, plays, how far and when', () => {
  assert.equal(viewersWords(COMPLETED, NOW), NOT_WATCHED);
  assert.equal(viewersWords({}, NOW), 'Not watched yet');
  assert.equal(
    viewersWords({ views: 2, plays: 1, maxWatchedPercent: 50, lastViewedAt: at(3 * 60_000 + 5_000) }, NOW),
    'Viewed 2 times, played 1, watched 50 %, last 3 min ago',
  );
  assert.equal(viewersWords({ views: 1, lastViewedAt: at(4_000) }, NOW), 'Viewed 1 time, not played yet, last a moment ago');
  assert.equal(viewersWords({ views: 3, plays: 2, maxWatchedPercent: 100 }, NOW), 'Viewed 3 times, played 2, watched 100 %');
  // What the server did not write, or wrote oddly, says nothing.
  assert.equal(viewersWords({ views: '5', plays: -1, maxWatchedPercent: null, lastViewedAt: 'x' }, NOW), NOT_WATCHED);
  assert.equal(viewersWords({ views: 1, lastViewedAt: new Date(NOW - 2 * 3_600_000) }, NOW), 'Viewed 1 time, not played yet, last 2 h ago');
});

test('how long ago, in the words a rep reads at a glance', () => {
  assert.equal(agoWords(0), 'a moment ago');
  assert.equal(agoWords(-30_000), 'a moment ago', 'a clock a little ahead');
  assert.equal(agoWords(59_999), 'a moment ago');
  assert.equal(agoWords(60_000), '1 min ago');
  assert.equal(agoWords(59 * 60_000), '59 min ago');
  assert.equal(agoWords(3 * 3_600_000), '3 h ago');
  assert.equal(agoWords(26 * 3_600_000), '1 day ago');
  assert.equal(agoWords(5 * 86_400_000), '5 days ago');
});

test('a shared video: its link, Stop sharing, the viewers and the GIF', () => {
  const view = deliveryOf(COMPLETED, { now: NOW });
  assert.deepEqual(view, {
    share: 'shared',
    shareUrl: 'https://demo.web.app/v/Zx9_shareid',
    stateText: '',
    viewers: 'Not watched yet',
    canStop: true,
    thumbnail: {
      src: 'https://storage.test/a.gif',
      kind: 'gif',
      alt: 'Email thumbnail for Anna Smith: the video\'s opening with the name',
    },
  });
  // Live: the next snapshot's counters are the next words.
  const watched = deliveryOf({ ...COMPLETED, views: 1, plays: 1, maxWatchedPercent: 25, lastViewedAt: at(0) }, { now: NOW });
  assert.equal(watched.viewers, 'Viewed 1 time, played 1, watched 25 %, last a moment ago');
});

test('a revoked share says "Sharing stopped" and offers no link, copy or stop', () => {
  const view = deliveryOf({ ...COMPLETED, shareRevoked: true, views: 2, plays: 1 }, { now: NOW });
  assert.equal(view.share, 'revoked');
  assert.equal(view.stateText, SHARING_STOPPED);
  assert.equal(view.shareUrl, '');
  assert.equal(view.canStop, false);
  assert.equal(view.viewers, 'Viewed 2 times, played 1', 'what viewers did before stays');
});

test('no share page, not completed, or a link that is no web link: nothing to share', () => {
  const none = deliveryOf({ ...COMPLETED, shareUrl: undefined, shareId: undefined }, { now: NOW });
  assert.deepEqual([none.share, none.shareUrl, none.viewers, none.canStop], ['none', '', '', false]);
  assert.equal(deliveryOf({ ...COMPLETED, status: 'uploading-result' }), null);
  assert.equal(deliveryOf(null), null);
  const evil = deliveryOf({ ...COMPLETED, shareUrl: 'javascript:alert(1)' }, { now: NOW });
  assert.equal(evil.share, 'none');
  assert.equal(deliveryOf({ ...COMPLETED, shareId: undefined }, { now: NOW }).canStop, false, 'the rules need a shareId');
});

test('the thumbnail: the GIF, the poster with reduced motion or without a GIF, none without either', () => {
  assert.equal(thumbnailOf(COMPLETED).kind, 'gif');
  assert.deepEqual(thumbnailOf(COMPLETED, { reducedMotion: true }), {
    src: 'https://storage.test/a.jpg', kind: 'poster', alt: 'Email poster for Anna Smith\'s video',
  });
  assert.equal(thumbnailOf({ ...COMPLETED, thumbnailUrl: undefined }).kind, 'poster');
  assert.equal(thumbnailOf({ ...COMPLETED, posterUrl: undefined }, { reducedMotion: true }).kind, 'gif');
  assert.equal(thumbnailOf({ status: 'completed' }), null);
});

test('Copy link and Stop sharing say what happened', () => {
  assert.equal(copyWords('copied'), 'Link copied.');
  assert.match(copyWords('selected'), /^The link is selected: press Ctrl\+C/);
  assert.equal(revokeAnswerText({ outcome: 'revoked', message: 'The share link no longer works.' }), 'Sharing stopped: the link no longer works.');
  assert.equal(revokeAnswerText({ outcome: 'refused', message: 'This video has no share link.' }), 'Sharing was not stopped: This video has no share link.');
  assert.equal(revokeAnswerText({ outcome: 'refused' }), 'Sharing was not stopped.');
  assert.equal(revokeAnswerText({ outcome: 'odd' }), 'The request was answered: odd.');
  assert.equal(revokeAnswerText(null), '');
});

test('the export\'s words', () => {
  assert.equal(
    exportDoneText({ fileName: 'prospects-with-links.csv', ready: 2, total: 3, from: 'csv' }),
    'Downloaded prospects-with-links.csv: 2 of 3 videos ready.',
  );
  assert.match(exportDoneText({ fileName: 'b.csv', ready: 1, total: 1, from: 'unknown' }), /^Downloaded b\.csv: 1 of 1 video ready\. This browser does not hold the list/);
  assert.match(exportDoneText({ fileName: 'b.csv', ready: 0, total: 2, from: 'unreadable', csvProblem: 'no name column' }), /could not be read again \(no name column\)/);
  assert.equal(exportFailedText(new Error('offline')), 'The CSV could not be made: offline');
});


test('the page keeps the list each batch was sent from: the 20 latest, per user', () => {
  const storage = memoryStorage();
  for (let i = 0; i < 25; i++) {
    assert.equal(rememberBatch(storage, 'u1', { batchIds: [`b${i}`], name: `list${i}.csv`, text: `name\nP${i}\n` }, i), true);
  }
  const kept = loadSources(storage, 'u1');
  assert.equal(kept.length, MAX_KEPT);
  assert.deepEqual(kept.map((r) => r.batchIds[0]), Array.from({ length: 20 }, (_, i) => `b${i + 5}`), 'oldest dropped');
  assert.equal(sourceOf(storage, 'u1', 'b3'), null);
  assert.deepEqual(sourceOf(storage, 'u1', 'b7'), { batchIds: ['b7'], name: 'list7.csv', text: 'name\nP7\n', savedAt: 7 });
  assert.equal(sourceOf(storage, 'u2', 'b7'), null, 'one list per user');
  // A list of more than 400 names is several batches: any of them finds it.
  rememberBatch(storage, 'u1', { batchIds: ['big', 'big-2'], name: null, text: null }, 30);
  assert.deepEqual(sourceOf(storage, 'u1', 'big-2').batchIds, ['big', 'big-2']);
});

test('a full storage drops the oldest lists first, and a list too big is kept without its text', () => {
  const storage = memoryStorage({ limit: 500 });
  rememberBatch(storage, 'u1', { batchIds: ['a'], name: 'a.csv', text: 'x'.repeat(150) }, 1);
  rememberBatch(storage, 'u1', { batchIds: ['b'], name: 'b.csv', text: 'y'.repeat(150) }, 2);
  assert.deepEqual(loadSources(storage, 'u1').map((r) => r.batchIds[0]), ['a', 'b']);
  rememberBatch(storage, 'u1', { batchIds: ['c'], name: 'c.csv', text: 'z'.repeat(150) }, 3);
  assert.deepEqual(loadSources(storage, 'u1').map((r) => r.batchIds[0]), ['b', 'c']);
  assert.equal(rememberBatch(storage, 'u1', { batchIds: ['d'], name: 'd.csv', text: 'w'.repeat(1000) }, 4), true);
  assert.deepEqual(loadSources(storage, 'u1'), [{ batchIds: ['d'], name: 'd.csv', text: null, savedAt: 4 }]);
});

test('what was stored is checked, never trusted', () => {
  const storage = memoryStorage();
  storage.setItem(sourcesKey('u1'), 'not json');
  assert.deepEqual(loadSources(storage, 'u1'), []);
  storage.setItem(sourcesKey('u1'), JSON.stringify([{ batchIds: ['../x'] }, { batchIds: ['ok'], text: 3 }, 7]));
  assert.deepEqual(loadSources(storage, 'u1'), [{ batchIds: ['ok'], name: null, text: null, savedAt: 0 }]);
  assert.equal(rememberBatch(storage, 'u1', { batchIds: [] }), false);
  const blocked = { getItem() { throw new Error('SecurityError'); }, setItem() { throw new Error('SecurityError'); } };
  assert.deepEqual(loadSources(blocked, 'u1'), []);
  assert.equal(rememberBatch(blocked, 'u1', { batchIds: ['a'], name: null, text: null }), false);
});

const JOBS = [
  { prospectName: 'Lee Export', batchIndex: 2, status: 'completed', shareUrl: 'https://x/v/lee', downloadUrl: 'https://s/lee' },
  { prospectName: 'Kim Share', batchIndex: 0, status: 'completed', shareUrl: 'https://x/v/kim', shareRevoked: true, downloadUrl: 'https://s/kim' },
];

test('the export: the rep\'s own CSV as chosen (BOM, CR line ends), filled in row for row', () => {
  const text = '\uFEFFEmail,name\r\nkim@x.test,Kim Share\r\nnobody@x.test,\r\nlee@x.test,Lee Export\r\n';
  const made = buildExport({ source: { name: 'prospects.csv', text }, jobs: JOBS, batchId: 'b1' });
  assert.equal(made.fileName, 'prospects-with-links.csv');
  assert.equal(made.from, 'csv');
  assert.deepEqual([made.ready, made.total], [2, 2]);
  assert.equal(made.text, 'Email,name,status,videoLink,thumbnailUrl,gifUrl,error\r\n'
    + 'kim@x.test,Kim Share,completed,https://s/kim,,,\r\n'
    + 'nobody@x.test,,skipped,,,,blank name\r\n'
    + 'lee@x.test,Lee Export,completed,https://x/v/lee,,,\r\n');
});

test('the export without the CSV: typed names, a batch this browser does not know, a CSV gone bad', () => {
  const typed = buildExport({ source: { name: null, text: null }, jobs: JOBS, batchId: '3f2a9c1e-77aa' });
  assert.equal(typed.from, 'names');
  assert.equal(typed.fileName, 'batch-3f2a9c1e-with-links.csv');
  assert.equal(typed.text.split('\r\n')[0], 'prospectName,firstName,pronunciation,status,videoLink,thumbnailUrl,gifUrl,error');
  assert.deepEqual(typed.text.split('\r\n').slice(1, 3).map((line) => line.split(',')[0]), ['Kim Share', 'Lee Export'], 'in the list\'s order');
  assert.equal(buildExport({ source: null, jobs: JOBS, batchId: 'b1' }).from, 'unknown');
  const bad = buildExport({ source: { name: 'p.csv', text: 'email\nx\n' }, jobs: JOBS, batchId: 'b1' });
  assert.equal(bad.from, 'unreadable');
  assert.match(bad.csvProblem, /no `name`/);
});

test('exportBatch reads every batch of the list and saves one file', async () => {
  const storage = memoryStorage();
  rememberBatch(storage, 'u1', { batchIds: ['b1', 'b1-2'], name: 'p.csv', text: 'name\nKim Share\n\nx\nLee Export\n' });
  const asked = [];
  const saved = [];
  const result = await exportBatch({
    storage, uid: 'u1', batchId: 'b1-2',
    listJobs: async (ids) => { asked.push(ids); return JOBS; },
    save: (blob, fileName) => saved.push([blob, fileName]),
  });
  assert.deepEqual(asked, [['b1', 'b1-2']]);
  assert.deepEqual(result, { fileName: 'p-with-links.csv', from: 'csv', ready: 2, total: 2 });
  assert.equal(saved[0][1], 'p-with-links.csv');
  assert.equal(await saved[0][0].text(), 'name,status,videoLink,thumbnailUrl,gifUrl,error\r\nKim Share,completed,https://s/kim,,,\r\n\r\n'
    + 'x,not sent,,,,\r\nLee Export,completed,https://x/v/lee,,,\r\n');
  await assert.rejects(
    exportBatch({ storage, uid: 'u1', batchId: 'zz', listJobs: async () => [], save: () => {} }),
    /none of this batch's jobs are left/,
  );
});

test('each name\'s row in the rep\'s list: the CSV\'s data row, or its place among the names typed', async () => {
  const { listOrigin } = await import('../src/batch-sources.js');
  const { namesFromCsv, namesFromText, pickNames } = await import('../src/names.js');
  const text = 'name,company\r\nKim Share,A\r\n,B\r\n\r\nkim share,C\r\nLee Export,D\r\n';
  const csv = { source: 'p.csv', text, ...namesFromCsv(text, 'p.csv') };
  const merge = (typed) => pickNames([
    ...typed.names.map((name) => ['box', name]),
    ...csv.names.map((name, i) => ['p.csv', name, csv.firstNames[i], csv.pronunciations[i]]),
  ]);
  const none = namesFromText('');
  assert.deepEqual(listOrigin({ typed: none, csv, merged: merge(none) }), {
    rows: [0, 3], source: { name: 'p.csv', text },
  });
  const typed = namesFromText('Ann\n, Bo\nann');
  assert.deepEqual(listOrigin({ typed, csv: null, merged: pickNames(typed.names.map((n) => ['box', n])) }), {
    rows: [0, 2], source: { name: null, text: null },
  });
  // Both: places in the merged list, exported as a list (the CSV does not hold the typed names).
  assert.deepEqual(listOrigin({ typed, csv, merged: merge(typed) }), {
    rows: [0, 1, 2, 3], source: { name: null, text: null },
  });
  // A CSV from an older draft, without its rows: its names' places, and no CSV to fill in.
  const { rows, ...older } = csv;
  assert.deepEqual(listOrigin({ typed: none, csv: older, merged: merge(none) }), {
    rows: [0, 1], source: { name: null, text: null },
  });
});

test('the share page fields: only what was given, both parts of the button or neither', async () => {
  const { shareFields } = await import('../src/delivery-view.js');
  assert.deepEqual(shareFields({}), {});
  assert.deepEqual(shareFields({ senderName: '  Sam Rep ' }), { senderName: 'Sam Rep' });
  assert.deepEqual(
    shareFields({ ctaText: 'Book 15 minutes', ctaUrl: 'https://cal.example.com/sam?x=1' }),
    { ctaText: 'Book 15 minutes', ctaUrl: 'https://cal.example.com/sam?x=1' },
  );
  const refused = (values) => { try { shareFields(values); return null; } catch (error) { return [error.field, error.message]; } };
  assert.equal(refused({ ctaText: 'Book' })[0], 'cta-url');
  assert.equal(refused({ ctaUrl: 'https://a.example' })[0], 'cta-text');
  assert.match(refused({ ctaText: 'Book', ctaUrl: 'http://a.example' })[1], /https:\/\//);
  assert.equal(refused({ ctaText: 'Book', ctaUrl: 'https://user@a.example' })[0], 'cta-url');
  assert.equal(refused({ ctaText: 'x'.repeat(41), ctaUrl: 'https://a.example' })[0], 'cta-text');
  assert.equal(refused({ senderName: 'x'.repeat(81) })[0], 'sender-name');
});
