// The batch as the unit of "My jobs" (web/src/batch-model.js), without a browser: grouping and
// order, a header's counts, progress and time left, filters, queue places, what is said aloud
// and how often, and "Download all"'s zip (web/src/batch-zip.js) with its 1 GB refusal.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { unzipSync } from 'fflate';

import {
  ANNOUNCE_EVERY_MS, COMPACT_ABOVE, Throttle, ZIP_LIMIT_BYTES, batchesAtCutoff, compareInBatch,
  countJobs, countsWords, emptyFilterWords, etaMs, etaWords, failureReason, failureWords, formatBytes,
  groupJobs, matchesFilter, millis, progressLabel, queuePositions, queueWords, stayingIndexes,
  totalsWords, zipButtonLabel, zipDoneWords, zipEntries, zipFileName, zipRefusal,
} from '../src/batch-model.js';
import { ZipRefused, zipVideos } from '../src/batch-zip.js';

const T0 = Date.UTC(2026, 0, 5, 14, 0, 0);
const ts = (ms) => ({ toMillis: () => ms }); // a Firestore Timestamp, as far as the page reads one

function job(id, fields = {}) {
  return { id, status: 'pending', createdAt: ts(T0), ...fields };
}

test('millis reads Timestamps, Dates, {seconds, nanoseconds} and numbers', () => {
  assert.equal(millis(ts(5)), 5);
  assert.equal(millis(new Date(7)), 7);
  assert.equal(millis({ seconds: 2, nanoseconds: 5_000_000 }), 2005);
  assert.equal(millis(9), 9);
  for (const value of [null, undefined, 'soon', NaN, {}]) assert.equal(millis(value), null);
});

test('jobs group by batch, newest batch first; previews and jobs without a batch stand alone', () => {
  const jobs = [
    job('a2', { batchId: 'A', batchIndex: 2, createdAt: ts(T0) }),
    job('b0', { batchId: 'B', batchIndex: 0, createdAt: ts(T0 + 60_000) }),
    job('a0', { batchId: 'A', batchIndex: 0, createdAt: ts(T0) }),
    job('p', { batchId: 'P', preview: true, createdAt: ts(T0 + 30_000) }),
    job('loose', { createdAt: ts(T0 + 90_000) }),
    job('a1', { batchId: 'A', batchIndex: 1, createdAt: ts(T0) }),
    job('b1', { batchId: 'B', batchIndex: 1, createdAt: ts(T0 + 60_000) }),
  ];
  const groups = groupJobs(jobs);
  assert.deepEqual(groups.map((g) => [g.key, g.jobs.map((j) => j.id)]), [
    ['job:loose', ['loose']],
    ['batch:B', ['b0', 'b1']],
    ['job:p', ['p']],
    ['batch:A', ['a0', 'a1', 'a2']],
  ]);
  assert.deepEqual(groups.map((g) => g.headed), [false, true, false, true]);
  assert.deepEqual(groups.map((g) => g.batchId), [null, 'B', null, 'A']);
});

test('a job the server has not timestamped yet counts as now: its new batch goes first', () => {
  const groups = groupJobs([
    job('old', { batchId: 'old', createdAt: ts(T0) }),
    job('new', { batchId: 'new', createdAt: null }),
  ], { now: T0 + 1000 });
  assert.deepEqual(groups.map((g) => g.batchId), ['new', 'old']);
});

test('inside a batch: the CSV row first, then creation, then id; rows without one last', () => {
  const rows = [
    job('z', { batchIndex: 3, createdAt: ts(T0 + 5) }),
    job('y', { createdAt: ts(T0 + 1) }),
    job('x', { batchIndex: 3, createdAt: ts(T0 + 1) }),
    job('w', { batchIndex: 0, createdAt: ts(T0 + 9) }),
    job('v', { createdAt: ts(T0 + 1) }),
  ];
  assert.deepEqual(rows.sort(compareInBatch).map((j) => j.id), ['w', 'x', 'z', 'v', 'y']);
});

test('a batch of more than 10 is compact; a batch of 10 keeps its full cards', () => {
  const batch = (n) => Array.from({ length: n }, (_, i) => job(`j${i}`, { batchId: `B${n}`, batchIndex: i }));
  assert.equal(COMPACT_ABOVE, 10);
  assert.equal(groupJobs(batch(10))[0].compact, false);
  assert.equal(groupJobs(batch(11))[0].compact, true);
});

test('the batches reaching a full window\'s end are followed; a window not full needs none', () => {
  const window = [
    { batchId: 'new', createdAt: ts(T0 + 10) },
    { batchId: 'big', createdAt: ts(T0 + 5) },
    { batchId: 'big', createdAt: ts(T0) },
    { batchId: 'tie', createdAt: ts(T0) },
    { createdAt: ts(T0) },
  ];
  assert.deepEqual(batchesAtCutoff(window, { full: true }), ['big', 'tie']);
  assert.deepEqual(batchesAtCutoff(window, { full: false }), []);
  assert.deepEqual(batchesAtCutoff([], { full: true }), []);
});

test('counts in words, and the progress bar\'s name', () => {
  const jobs = [
    ...Array.from({ length: 38 }, (_, i) => job(`d${i}`, { status: 'completed' })),
    job('f1', { status: 'failed' }), job('f2', { status: 'failed' }),
  ];
  const counts = countJobs(jobs);
  assert.equal(countsWords(counts), '38 done, 2 failed, 0 running');
  assert.equal(progressLabel(counts), 'Batch of 40: 40 of 40 finished');
  const mixed = countJobs([
    job('a', { status: 'completed' }), job('b', { status: 'generating-video' }), job('c', { status: 'queued' }),
    job('d', { status: 'pending' }), job('e', { status: 'cancelled' }),
  ]);
  assert.deepEqual(mixed, { total: 5, done: 1, failed: 0, cancelled: 1, running: 3, waiting: 2, finished: 2 });
  assert.equal(countsWords(mixed), '1 done, 0 failed, 3 running, 1 cancelled');
  assert.equal(progressLabel(mixed), 'Batch of 5: 2 of 5 finished');
});

test('the time left comes from the rate this batch finished so far, and none before the first', () => {
  const start = T0;
  const running = Array.from({ length: 8 }, (_, i) => job(`r${i}`, { status: 'generating-video', createdAt: ts(start) }));
  assert.equal(etaMs(running, start + 60_000), null, 'nothing finished yet');
  // 2 of 10 finished in the first 20 s: 8 left at 10 s each.
  const jobs = [
    ...running,
    job('d1', { status: 'completed', createdAt: ts(start), completedAt: ts(start + 12_000) }),
    job('d2', { status: 'failed', createdAt: ts(start), completedAt: ts(start + 18_000) }),
  ];
  assert.equal(etaMs(jobs, start + 20_000), 80_000);
  // A job that ended without completedAt is timed by its last stage.
  const viaHistory = [...running, job('h', { status: 'completed', createdAt: ts(start), history: [{ status: 'completed', at: ts(start + 5000) }] })];
  assert.equal(etaMs(viaHistory, start + 10_000), 80_000);
  assert.equal(etaMs(jobs.map((j) => ({ ...j, status: 'completed', completedAt: ts(start + 1) })), start + 20_000), null, 'nothing left');
});

test('time left in words', () => {
  assert.equal(etaWords(null), '');
  assert.equal(etaWords(4_000), 'a few seconds left');
  assert.equal(etaWords(41_000), 'about 40 s left');
  assert.equal(etaWords(12_000), 'about 10 s left');
  assert.equal(etaWords(170_000), 'about 3 min left');
  assert.equal(etaWords(65 * 60_000), 'about 1 h 05 min left');
});

test('filters show what they say', () => {
  const statuses = ['pending', 'queued', 'generating-video', 'completed', 'failed', 'cancelled'];
  const shown = (key) => statuses.filter((s) => matchesFilter(key, s));
  assert.deepEqual(shown('all'), statuses);
  assert.deepEqual(shown('running'), ['pending', 'queued', 'generating-video']);
  assert.deepEqual(shown('failed'), ['failed']);
  assert.deepEqual(shown('done'), ['completed']);
  assert.equal(emptyFilterWords('failed'), 'No failed jobs in this batch.');
  assert.equal(emptyFilterWords('done'), 'No finished videos in this batch yet.');
});

test('a waiting job\'s place: the user\'s waiting jobs created before it', () => {
  const jobs = [
    job('late', { status: 'pending', batchId: 'B', batchIndex: 0, createdAt: ts(T0 + 100) }),
    job('run', { status: 'generating-video', createdAt: ts(T0 - 50) }),
    job('first', { status: 'queued', batchId: 'A', batchIndex: 1, createdAt: ts(T0) }),
    job('zeroth', { status: 'queued', batchId: 'A', batchIndex: 0, createdAt: ts(T0) }),
    job('done', { status: 'completed', createdAt: ts(T0 - 100) }),
  ];
  const ahead = queuePositions(jobs);
  assert.deepEqual(Object.fromEntries(ahead), { zeroth: 0, first: 1, late: 2 });
  assert.equal(queueWords(ahead.get('late')), '2 ahead');
  assert.equal(queueWords(0), 'next');
  assert.equal(queueWords(undefined), '');
});

test('a batch\'s totals and failures in words', () => {
  const counts = countJobs([
    ...Array.from({ length: 20 }, (_, i) => job(`d${i}`, { status: 'completed' })),
    job('f', { status: 'failed' }),
    ...Array.from({ length: 19 }, (_, i) => job(`r${i}`, { status: 'queued' })),
  ]);
  assert.equal(totalsWords(counts), 'Batch of 40: 20 done, 1 failed');
  assert.equal(totalsWords(countJobs([job('a', { status: 'completed' }), job('b', { status: 'cancelled' })])), 'Batch of 2 finished: 1 done, 0 failed, 1 cancelled');
  const tooLong = { code: 'greeting-too-long', message: 'The greeting "Hey Maximilian," needs 1.48 s.' };
  assert.deepEqual(failureWords([{ name: 'Maximilian', error: tooLong }]), ['Maximilian failed: the greeting is too long']);
  assert.deepEqual(
    failureWords(['Ann', 'Ben', 'Cy', 'Dee', 'Eve'].map((name) => ({ name, error: tooLong }))
      .concat([{ name: 'Fay', error: { code: 'odd', message: 'Something odd happened. Then more.' } }])),
    ['Ann, Ben and 3 others failed: the greeting is too long', 'Fay failed: something odd happened'],
  );
  assert.deepEqual(failureWords([{ name: 'Al', error: tooLong }, { name: 'Bo', error: tooLong }]), ['Al and Bo failed: the greeting is too long']);
  assert.equal(failureReason({ code: 'x-y' }), 'x-y');
  assert.equal(failureReason(undefined), 'an unknown error');
});

test('a batch\'s totals are said at most once per 5 s; the latest waiting words win; repeats are not said', () => {
  const throttle = new Throttle();
  assert.equal(ANNOUNCE_EVERY_MS, 5000);
  throttle.seed('B', 'Batch of 40: 0 done, 0 failed');
  assert.equal(throttle.note('B', 'Batch of 40: 0 done, 0 failed', T0), null, 'nothing new');
  assert.equal(throttle.note('B', 'Batch of 40: 1 done, 0 failed', T0), 'Batch of 40: 1 done, 0 failed');
  assert.equal(throttle.note('B', 'Batch of 40: 2 done, 0 failed', T0 + 1000), null);
  assert.equal(throttle.note('B', 'Batch of 40: 3 done, 0 failed', T0 + 2000), null);
  assert.deepEqual(throttle.due(T0 + 4999), []);
  assert.deepEqual(throttle.due(T0 + 5000), ['Batch of 40: 3 done, 0 failed']);
  assert.deepEqual(throttle.due(T0 + 20_000), [], 'said once');
  // Another batch has its own 5 s.
  assert.equal(throttle.note('C', 'Batch of 12: 1 done, 0 failed', T0 + 5001), 'Batch of 12: 1 done, 0 failed');
  // Words that change back to what was said are dropped.
  assert.equal(throttle.note('B', 'Batch of 40: 4 done, 0 failed', T0 + 6000), null);
  assert.equal(throttle.note('B', 'Batch of 40: 3 done, 0 failed', T0 + 7000), null);
  assert.deepEqual(throttle.due(T0 + 11_000), []);
  // Seeding (the batch grew as it was read) says nothing.
  throttle.seed('B', 'Batch of 400: 390 done, 10 failed');
  assert.deepEqual(throttle.due(T0 + 60_000), []);
  throttle.forget('B');
  assert.equal(throttle.has('B'), false);
});

test('a 40-name batch finishing over 69 s is said in at most 15 announcements, not 61', () => {
  // One job finishing every 1.7 s: totals at most every 5 s, and the last one at the end.
  const throttle = new Throttle();
  const said = [];
  throttle.seed('B', totalsWords(countJobs(Array.from({ length: 40 }, (_, i) => job(`j${i}`)))));
  for (let done = 1; done <= 40; done++) {
    const now = T0 + done * 1725;
    const counts = { total: 40, done, failed: 0, cancelled: 0, running: 40 - done, waiting: 0, finished: done };
    const words = throttle.note('B', totalsWords(counts), now);
    if (words) said.push(words);
    said.push(...throttle.due(now));
  }
  said.push(...throttle.due(T0 + 40 * 1725 + 5000));
  assert.ok(said.length <= 15, `${said.length}: ${said.join(' | ')}`);
  assert.equal(said.at(-1), 'Batch of 40 finished: 40 done, 0 failed');
});

test('the fewest moves put the list in order', () => {
  // Current positions of the desired items (-1: new).
  assert.deepEqual([...stayingIndexes([0, 1, 2, 3])].sort(), [0, 1, 2, 3]);
  assert.deepEqual([...stayingIndexes([-1, -1, 0, 1, 2])].sort(), [2, 3, 4], 'a new batch on top moves nothing');
  assert.deepEqual([...stayingIndexes([1, 2, 3, 0])].sort(), [0, 1, 2], 'one row to the end: one move');
  assert.equal(stayingIndexes([3, 2, 1, 0]).size, 1);
  assert.equal(stayingIndexes([]).size, 0);
});

// ---- Download all ----

test('sizes, names and words of the zip', () => {
  assert.equal(formatBytes(840 * 1024), '840 KB');
  assert.equal(formatBytes(8.5 * 2 ** 20), '8.5 MB');
  assert.equal(formatBytes(212 * 2 ** 20), '212 MB');
  assert.equal(formatBytes(1.5 * 2 ** 30), '1.50 GB');
  assert.equal(zipFileName('prospects.csv', 'abc'), 'prospects-videos.zip');
  assert.equal(zipFileName(null, '1234abcd-ef'), 'batch-1234abcd-videos.zip');
  assert.equal(zipButtonLabel(38), 'Download all (38 videos)');
  assert.equal(zipDoneWords({ fileName: 'p-videos.zip', count: 38, bytes: 212 * 2 ** 20 }), 'Downloaded p-videos.zip: 38 videos, 212 MB.');
  assert.match(zipDoneWords({ fileName: 'p.zip', count: 1, bytes: 2048, failed: 2 }), /^Downloaded p\.zip: 1 video, 2 KB\. 2 could not be read/);
  const entries = zipEntries([
    job('j1', { status: 'completed', prospectName: 'Anna Smith', downloadUrl: 'https://x.test/a.mp4' }),
    job('j2', { status: 'failed', prospectName: 'Ben', downloadUrl: 'https://x.test/b.mp4' }),
    job('j3', { status: 'completed', prospectName: 'Carla', downloadUrl: 'javascript:alert(1)' }),
  ]);
  assert.deepEqual(entries, [{ id: 'j1', url: 'https://x.test/a.mp4', name: 'anna-smith-j1.mp4' }]);
});

test('the zip is refused above 1 GB, in words, early when the first videos say it will be', () => {
  assert.equal(ZIP_LIMIT_BYTES, 2 ** 30);
  assert.equal(zipRefusal({ bytes: 100 * 2 ** 20, fetched: 10, total: 10 }), null);
  assert.match(zipRefusal({ bytes: ZIP_LIMIT_BYTES + 1, fetched: 10, total: 10 }), /^The videos come to more than 1\.00 GB \(1\.00 GB after 10 of 10\)/);
  // 3 videos of 30 MB: 400 of them would be about 11.7 GB.
  assert.match(zipRefusal({ bytes: 90 * 2 ** 20, fetched: 3, total: 400 }), /^These 400 videos would come to about 11\.72 GB: more than the 1\.00 GB/);
  assert.equal(zipRefusal({ bytes: 90 * 2 ** 20, fetched: 2, total: 400 }), null, 'two are too few to judge by');
  assert.equal(zipRefusal({ bytes: 90 * 2 ** 20, fetched: 3, total: 30 }), null);
});

const fakeFetch = (files) => async (url) => {
  if (!(url in files)) return new Response('gone', { status: 403, statusText: 'Forbidden' });
  return new Response(files[url]);
};

test('Download all: the videos in one zip, in order, under their own names; an unreadable one skipped', async () => {
  const files = { 'https://s.test/1': new Uint8Array([1, 2, 3]), 'https://s.test/3': new Uint8Array(5000).fill(7) };
  const entries = [
    { url: 'https://s.test/1', name: 'anna-smith-j1.mp4' },
    { url: 'https://s.test/2', name: 'ben-j2.mp4' },
    { url: 'https://s.test/3', name: 'carla-j3.mp4' },
  ];
  const progress = [];
  const result = await zipVideos(entries, { fetchFn: fakeFetch(files), onProgress: (p) => progress.push(p.fetched) });
  assert.equal(result.count, 2);
  assert.equal(result.bytes, 5003);
  assert.deepEqual(result.failed.map((f) => f.name), ['ben-j2.mp4']);
  assert.deepEqual(progress, [1, 2, 3]);
  const unzipped = unzipSync(new Uint8Array(await result.blob.arrayBuffer()));
  assert.deepEqual(Object.keys(unzipped), ['anna-smith-j1.mp4', 'carla-j3.mp4']);
  assert.deepEqual([...unzipped['anna-smith-j1.mp4']], [1, 2, 3]);
  assert.equal(unzipped['carla-j3.mp4'].length, 5000);
});

test('Download all: refused past the limit, and nothing readable is an error', async () => {
  const files = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`https://s.test/${i}`, new Uint8Array(800)]));
  const entries = Object.keys(files).map((url, i) => ({ url, name: `v${i}.mp4` }));
  await assert.rejects(zipVideos(entries, { fetchFn: fakeFetch(files), limit: 3000 }), (error) => {
    assert.ok(error instanceof ZipRefused);
    assert.match(error.message, /^These 5 videos would come to about 4 KB: more than the 3 KB/);
    return true;
  });
  await assert.rejects(zipVideos([{ url: 'https://s.test/none', name: 'x.mp4' }], { fetchFn: fakeFetch({}) }), /No video could be read \(403 Forbidden\)/);
});
