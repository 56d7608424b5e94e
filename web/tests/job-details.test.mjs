// What a job card says about its result (web/src/status.js), without a browser: the greeting end
// used, what fitting the greeting took, and which voice spoke.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { fitSummary, greetingEndLabel, voiceLabel } from '../src/status.js';

const NEUTRAL = { tempo: 1.0, providerSpeed: 1.0, pauseUsedSecond: 0.0, leadTrimmedSecond: 0.0 };

test('the greeting end shows with two decimals once the job has one', () => {
  assert.equal(greetingEndLabel({ greetingEndSecond: 0.97 }), 'Greeting ends at 0.97 s');
  assert.equal(greetingEndLabel({ greetingEndSecond: 1.5 }), 'Greeting ends at 1.50 s');
  assert.equal(greetingEndLabel({ greetingEndSecond: 2 }), 'Greeting ends at 2.00 s');
  assert.equal(greetingEndLabel({ greetingEndSecond: 0.966 }), 'Greeting ends at 0.97 s');
  assert.equal(greetingEndLabel({ greetingEndSecond: '1.25' }), 'Greeting ends at 1.25 s');
});

test('no greeting end yet, or a meaningless one, gives no line', () => {
  for (const job of [
    {}, null, undefined, 'job', { greetingEndSecond: null }, { greetingEndSecond: 0 },
    { greetingEndSecond: -1 }, { greetingEndSecond: NaN }, { greetingEndSecond: Infinity },
    { greetingEndSecond: '' }, { greetingEndSecond: 'soon' }, { greetingEndSecond: {} },
    { greetingEndSecond: true },
  ]) {
    assert.equal(greetingEndLabel(job), '', JSON.stringify(job));
  }
});

test('a fit says only what was done, in one line', () => {
  assert.equal(
    fitSummary({ tempo: 1.04, providerSpeed: 1.12, pauseUsedSecond: 0.3, leadTrimmedSecond: 0 }),
    'Fitted: spoken 1.12x faster, stretched 1.04x, used 0.30 s of the pause after the greeting',
  );
  assert.equal(fitSummary({ ...NEUTRAL, pauseUsedSecond: 0.214 }), 'Fitted: used 0.21 s of the pause after the greeting');
  assert.equal(fitSummary({ ...NEUTRAL, providerSpeed: 1.2 }), 'Fitted: spoken 1.20x faster');
  assert.equal(fitSummary({ ...NEUTRAL, tempo: 1.1834 }), 'Fitted: stretched 1.18x');
  assert.equal(fitSummary({ ...NEUTRAL, leadTrimmedSecond: 0.1 }), 'Fitted: cut 0.10 s of leading silence');
  assert.equal(
    fitSummary({ tempo: 1.3, providerSpeed: 1.2, pauseUsedSecond: 0.45, leadTrimmedSecond: 0.08 }),
    'Fitted: spoken 1.20x faster, stretched 1.30x, used 0.45 s of the pause after the greeting, '
      + 'cut 0.08 s of leading silence',
  );
});

test('a neutral fit, or none, gives no line', () => {
  assert.equal(fitSummary(NEUTRAL), '');
  assert.equal(fitSummary({ tempo: 1, providerSpeed: 1, pauseUsedSecond: 0, leadTrimmedSecond: 0 }), '');
  // What would read "1.00x" or "0.00 s" was not worth saying.
  assert.equal(fitSummary({ tempo: 1.0001, providerSpeed: 1.004, pauseUsedSecond: 0.004, leadTrimmedSecond: 0.001 }), '');
  for (const fit of [undefined, null, {}, [], 'fit', 1.2, true]) {
    assert.equal(fitSummary(fit), '', JSON.stringify(fit));
  }
});

test('odd fit values do not throw and are left out', () => {
  const odd = [
    { tempo: '1.10' },
    { tempo: 'fast', providerSpeed: null, pauseUsedSecond: undefined, leadTrimmedSecond: {} },
    { tempo: NaN, providerSpeed: Infinity, pauseUsedSecond: -0.5, leadTrimmedSecond: [] },
    { tempo: 0, providerSpeed: -1, pauseUsedSecond: '', leadTrimmedSecond: true },
    { providerSpeed: 0.9 },
  ];
  const shown = odd.map((fit) => fitSummary(fit));
  assert.deepEqual(shown, ['Fitted: stretched 1.10x', '', '', '', 'Fitted: spoken at 0.90x speed']);
});

test('the voice that spoke: the local one, or the clone', () => {
  assert.equal(voiceLabel({ voiceId: 'clone', voiceUsed: 'espeak:en-us' }), 'Voice: local (espeak:en-us)');
  assert.equal(voiceLabel({ voiceId: 'clone', voiceUsed: 'Xb7hH8MSUJpSbSDYk0k2' }), 'Voice: cloned (Xb7hH8MSUJpSbSDYk0k2)');
  assert.equal(voiceLabel({ voiceUsed: 'espeak:de' }), 'Voice: local (espeak:de)');
  assert.equal(voiceLabel({ voiceId: 'clone', voiceUsed: 'piper:joe' }), 'Voice: local (piper:joe)');
  assert.equal(voiceLabel({ voiceId: 'abc', voiceUsed: 'abc' }), 'Voice: abc');
});

test('no voiceUsed, or an odd one, gives no line', () => {
  for (const job of [
    {}, null, undefined, { voiceId: 'clone' }, { voiceId: 'clone', voiceUsed: '' },
    { voiceId: 'clone', voiceUsed: '   ' }, { voiceId: 'clone', voiceUsed: 42 },
    { voiceId: 'clone', voiceUsed: { id: 'x' } }, { voiceId: 'clone', voiceUsed: null },
  ]) {
    assert.equal(voiceLabel(job), '', JSON.stringify(job));
  }
});

// A job card's lines, through JobList itself on a tiny stand-in for the DOM (just what
// web/src/dom.js and jobs-view.js touch): text goes in as textContent, empty lines are hidden.
class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.parentNode = null;
    this.attributes = new Map();
    this.dataset = {};
    this.className = '';
    this.hidden = false;
    this.value = 0;
    this.textContent = '';
    this.classList = { toggle: () => {} };
  }

  get innerHTML() { throw new Error('innerHTML is not to be used for job data'); }
  set innerHTML(_) { throw new Error('innerHTML is not to be used for job data'); }
  get childElementCount() { return this.children.length; }
  get nextElementSibling() {
    const siblings = this.parentNode?.children ?? [];
    return siblings[siblings.indexOf(this) + 1] ?? null;
  }

  addEventListener() {}
  setAttribute(name, value) { this.attributes.set(name, String(value)); }
  getAttribute(name) { return this.attributes.get(name) ?? null; }
  removeAttribute(name) { this.attributes.delete(name); }
  append(...nodes) {
    for (const node of nodes) {
      if (typeof node === 'string') this.textContent += node;
      else { node.parentNode = this; this.children.push(node); }
    }
  }
  replaceChildren(...nodes) { this.children = []; this.append(...nodes); }
  insertBefore(node, before) {
    this.children = this.children.filter((c) => c !== node);
    const at = before ? this.children.indexOf(before) : -1;
    if (at < 0) this.children.push(node); else this.children.splice(at, 0, node);
    node.parentNode = this;
  }
  remove() {
    if (this.parentNode) this.parentNode.children = this.parentNode.children.filter((c) => c !== this);
  }
  contains(node) { return node === this || this.children.some((c) => c.contains(node)); }
  find(cls) {
    if (this.className.split(' ').includes(cls)) return this;
    for (const child of this.children) {
      const found = child.find(cls);
      if (found) return found;
    }
    return null;
  }
}

function snapshot(id, data) {
  return { docChanges: () => [{ type: 'modified', oldIndex: 0, newIndex: 0, doc: { id, data: () => data } }] };
}

test('a job card shows the greeting end, the fit and the voice as plain text lines', async (t) => {
  globalThis.document = { createElement: (tag) => new FakeElement(tag), activeElement: null };
  t.after(() => { delete globalThis.document; });
  const { JobList } = await import('../src/jobs-view.js');
  const list = new FakeElement('ol');
  const jobs = new JobList(list, { onAction: async () => {}, onStatus: () => {}, download: async () => {} });
  t.after(() => jobs.stop());
  const card = () => {
    const li = list.children[0];
    return Object.fromEntries(['job-greeting-end', 'job-fit', 'job-voice'].map((cls) => {
      const el = li.find(cls);
      return [cls, el.hidden ? null : el.textContent];
    }));
  };

  // Running, the end not found yet: no lines (and no fit before the job completes).
  const job = { prospectName: 'Anna <b>Smith</b>', status: 'validating-input', voiceId: 'clone' };
  jobs.apply(snapshot('job-1', job));
  assert.deepEqual(card(), { 'job-greeting-end': null, 'job-fit': null, 'job-voice': null });

  const fit = { tempo: 1.04, providerSpeed: 1.12, pauseUsedSecond: 0.3, leadTrimmedSecond: 0 };
  jobs.apply(snapshot('job-1', { ...job, status: 'generating-video', greetingEndSecond: 0.97, voiceUsed: 'espeak:en-us', fit }));
  assert.deepEqual(card(), {
    'job-greeting-end': 'Greeting ends at 0.97 s', 'job-fit': null, 'job-voice': 'Voice: local (espeak:en-us)',
  });

  jobs.apply(snapshot('job-1', { ...job, status: 'completed', greetingEndSecond: 0.97, voiceUsed: 'espeak:en-us', fit }));
  assert.deepEqual(card(), {
    'job-greeting-end': 'Greeting ends at 0.97 s',
    'job-fit': 'Fitted: spoken 1.12x faster, stretched 1.04x, used 0.30 s of the pause after the greeting',
    'job-voice': 'Voice: local (espeak:en-us)',
  });

  // Fitted as spoken: the fit line goes away; odd fields give no line and do not throw.
  jobs.apply(snapshot('job-1', { ...job, status: 'completed', greetingEndSecond: 'x', voiceUsed: 7, fit: { tempo: 1, providerSpeed: 1, pauseUsedSecond: 0, leadTrimmedSecond: 0 } }));
  assert.deepEqual(card(), { 'job-greeting-end': null, 'job-fit': null, 'job-voice': null });
});

test('a completed job\'s card: its share link, viewers live, "Sharing stopped" once revoked', async (t) => {
  globalThis.document = { createElement: (tag) => new FakeElement(tag), activeElement: null };
  t.after(() => { delete globalThis.document; });
  const { JobList } = await import('../src/jobs-view.js');
  const list = new FakeElement('ol');
  const jobs = new JobList(list, {
    onAction: async () => {}, onStatus: () => {}, download: async () => {}, exportBatch: async () => ({}),
  });
  t.after(() => jobs.stop());
  const shown = (cls) => {
    const el = list.children[0].find(cls);
    let hidden = el.hidden;
    for (let up = el.parentNode; up && !hidden; up = up.parentNode) hidden = up.hidden;
    return hidden ? null : el.textContent;
  };
  const job = {
    prospectName: 'Anna Smith', status: 'generating-video', batchId: 'b1',
    shareId: 's1', shareUrl: 'https://demo.web.app/v/s1', views: 0, plays: 0,
  };
  jobs.apply(snapshot('job-1', job));
  assert.equal(shown('job-share-link'), null, 'nothing to share before it completed');
  assert.equal(shown('job-export'), 'Export this batch as CSV', 'its batch can be exported already');

  jobs.apply(snapshot('job-1', { ...job, status: 'completed' }));
  assert.equal(shown('job-share-link'), 'https://demo.web.app/v/s1');
  assert.equal(list.children[0].find('job-share-link').href, 'https://demo.web.app/v/s1');
  assert.equal(shown('job-viewers'), 'Not watched yet');
  assert.equal(shown('job-share-stop'), 'Stop sharing');
  assert.equal(shown('job-share-state'), null);

  jobs.apply(snapshot('job-1', { ...job, status: 'completed', views: 2, plays: 1, maxWatchedPercent: 50, lastViewedAt: new Date(Date.now() - 3 * 60_000) }));
  assert.equal(shown('job-viewers'), 'Viewed 2 times, played 1, watched 50 %, last 3 min ago');

  jobs.apply(snapshot('job-1', { ...job, status: 'completed', shareRevoked: true }));
  assert.equal(shown('job-share-state'), 'Sharing stopped');
  assert.equal(shown('job-share-link'), null);
  assert.equal(shown('job-share-copy'), null);
  assert.equal(shown('job-share-stop'), null);

  // A preview is not a batch to export.
  jobs.apply(snapshot('job-1', { ...job, status: 'completed', preview: true }));
  assert.equal(shown('job-export'), null);
});
