// Whether a chosen file can be the rep's video (web/src/filecheck.js), without a browser: what
// the file says about itself, then what the browser's <video> made of it.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  MAX_VIDEO_BYTES, checkFile, extensionOf, formatMegabytes, formatSeconds, judgeProbe,
  looksLikeVideo, videoContentType,
} from '../src/filecheck.js';

const MB = 2 ** 20;

test('a video by type or by a known extension passes the first check', () => {
  for (const file of [
    { name: 'intro.mp4', type: 'video/mp4', size: 5 * MB },
    { name: 'intro.MOV', type: 'video/quicktime', size: 1 },
    { name: 'take2.webm', type: 'video/webm', size: 10 },
    { name: 'take3.mkv', type: '', size: 10 }, // browsers often give a .mkv no type
    { name: 'take4.m4v', type: 'application/octet-stream', size: 10 },
    { name: 'recording', type: 'video/x-msvideo', size: 10 }, // the type says video: the probe decides
  ]) {
    assert.deepEqual(checkFile(file), { ok: true }, file.name);
  }
});

test('an empty file is refused first, in words', () => {
  for (const file of [
    { name: 'empty.mp4', type: 'video/mp4', size: 0 },
    { name: 'empty.txt', type: 'text/plain', size: 0 },
    { name: 'odd.mp4', type: 'video/mp4', size: Number.NaN },
  ]) {
    const verdict = checkFile(file);
    assert.equal(verdict.ok, false);
    assert.match(verdict.message, /^This file is empty/);
    assert.ok(verdict.message.includes(file.name));
  }
});

test('a file that is not a video by type or extension is refused', () => {
  const verdict = checkFile({ name: 'notes.txt', type: 'text/plain', size: 11 });
  assert.equal(verdict.ok, false);
  assert.equal(verdict.message, 'This is not a video (notes.txt is text/plain). Choose an MP4, MOV, WebM or MKV video.');
  assert.equal(checkFile({ name: 'song.m4a', type: 'audio/mp4', size: 10 }).ok, false);
  assert.equal(checkFile({ name: 'README', type: '', size: 10 }).ok, false);
  assert.equal(checkFile({ name: 'photo.jpg', type: 'image/jpeg', size: 10 }).ok, false);
});

test('the backend\'s 500 MB is the largest video taken', () => {
  assert.equal(MAX_VIDEO_BYTES, 500 * 1024 * 1024); // storage.rules, triggers/uploads.py
  assert.deepEqual(checkFile({ name: 'big.mp4', type: 'video/mp4', size: MAX_VIDEO_BYTES }), { ok: true });
  const verdict = checkFile({ name: 'big.mp4', type: 'video/mp4', size: MAX_VIDEO_BYTES + 1 });
  assert.equal(verdict.ok, false);
  assert.match(verdict.message, /^This video is 500 MB; the limit is 500 MB\./);
  assert.match(checkFile({ name: 'big.mp4', type: 'video/mp4', size: 612 * MB }).message, /612 MB/);
});

test('what the browser made of it: a picture and a length within limits', () => {
  assert.deepEqual(judgeProbe({ event: 'loadedmetadata', duration: 8, videoWidth: 640 }), { ok: true, duration: 8 });
  assert.deepEqual(judgeProbe({ event: 'loadedmetadata', duration: 600, videoWidth: 1 }), { ok: true, duration: 600 });
  // A WebM recorded in a browser carries no duration: the worker measures it.
  assert.deepEqual(judgeProbe({ event: 'loadedmetadata', duration: Infinity, videoWidth: 640 }), { ok: true, duration: undefined });
});

test('a file the browser cannot play is refused with what to do', () => {
  const expected = 'This browser cannot play this file, so it cannot be a video we can use. Export it again as MP4 or WebM.';
  for (const probe of [
    { event: 'error' }, { event: 'error', code: 4 }, null, undefined, { event: 'stalled' },
    { event: 'loadedmetadata', duration: 0, videoWidth: 640 },
    { event: 'loadedmetadata', duration: Number.NaN, videoWidth: 640 },
  ]) {
    assert.deepEqual(judgeProbe(probe), { ok: false, message: expected }, JSON.stringify(probe));
  }
});

test('sound without a picture, too long and too short are refused', () => {
  const audio = judgeProbe({ event: 'loadedmetadata', duration: 8, videoWidth: 0 });
  assert.equal(audio.ok, false);
  assert.match(audio.message, /sound but no picture/);
  const long = judgeProbe({ event: 'loadedmetadata', duration: 750, videoWidth: 640 });
  assert.equal(long.ok, false);
  assert.equal(long.message, 'This video lasts 12 min 30 s; the limit is 10 min. Trim it and choose it again.');
  const short = judgeProbe({ event: 'loadedmetadata', duration: 0.8, videoWidth: 640 });
  assert.equal(short.ok, false);
  assert.match(short.message, /^This video lasts 0\.8 s: it needs the greeting and at least 1 s after it\./);
});

test('a browser that takes too long lets the file through, saying it was not checked here', () => {
  const verdict = judgeProbe({ event: 'timeout' });
  assert.equal(verdict.ok, true);
  assert.match(verdict.note, /checked again after the upload/);
});

test('extensions, types and sizes in words', () => {
  assert.equal(extensionOf('Intro.Final.MP4'), '.mp4');
  assert.equal(extensionOf('noext'), '');
  assert.equal(extensionOf('.hidden/dir'), '');
  assert.equal(extensionOf(undefined), '');
  assert.ok(looksLikeVideo({ name: 'a.webm', type: '' }));
  assert.ok(!looksLikeVideo({ name: 'a.txt', type: 'text/plain' }));
  assert.equal(videoContentType({ name: 'a.mp4', type: 'video/mp4' }), 'video/mp4');
  assert.equal(videoContentType({ name: 'a.mkv', type: '' }), 'video/x-matroska');
  assert.equal(videoContentType({ name: 'a.mov', type: 'application/octet-stream' }), 'video/quicktime');
  assert.equal(videoContentType({ name: 'a.bin', type: '' }), 'video/mp4');
  assert.equal(formatMegabytes(0.4 * MB), '0.4 MB');
  assert.equal(formatMegabytes(42.4 * MB), '42 MB');
  assert.equal(formatSeconds(8), '8.0 s');
  assert.equal(formatSeconds(42.4), '42 s');
  assert.equal(formatSeconds(600), '10 min');
});
