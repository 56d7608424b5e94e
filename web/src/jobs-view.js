// The live list of the user's jobs. Rows are keyed by job id and updated in place, so focus,
// a playing video and a half-read error survive every update the listener brings.
// Jobs are grouped by batch (batch-model.js), newest batch first, each batch under its header
// (batch-view.js) in the rep's list order; header and rows are items of the same list. A batch
// of more than COMPACT_ABOVE jobs has compact rows, laid out only when on screen (styles.css
// content-visibility), the player made on demand.

import {
  Throttle, batchesAtCutoff, countJobs, failureWords, groupJobs, matchesFilter,
  queuePositions, queueWords, stayingIndexes, totalsWords,
} from './batch-model.js';
import { BatchHeader } from './batch-view.js';
import {
  STOP_WORDS, copyWords, deliveryOf, exportDoneText, exportFailedText, revokeAnswerText,
} from './delivery-view.js';
import { h, setText, show } from './dom.js';
import { canEdit, changesFrom, sameBatchFailures } from './edit-retry.js';
import { outputFilename } from './names.js';
import {
  CANCELLABLE, TERMINAL, canRetry, fitSummary, formatDuration, greetingEndLabel, requestAnswerText,
  statusWords, voiceLabel,
} from './status.js';

// How long a request may go unanswered before the row says so (the trigger answers in seconds).
const ANSWER_TIMEOUT_MS = 120_000;

const millis = (value) => (value && typeof value.toMillis === 'function' ? value.toMillis() : null);

// Asked once (its `matches` follows the setting): a batch of 400 renders 400 deliveries.
const REDUCED_MOTION = globalThis.matchMedia?.('(prefers-reduced-motion: reduce)');
// One formatter for every stage's time (a batch of 400 has 800 of them; each new one is slow).
const CLOCK = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
function clock(ms) {
  return CLOCK.format(ms);
}

/** What the row says while a request is asked and unanswered (its answer: status.js, delivery-view.js). */
function requestWords(action) {
  if (action === 'revoke-share') return { ...STOP_WORDS, request: 'stop sharing', verb: 'stop sharing' };
  const cancel = action === 'cancel';
  return {
    asking: cancel ? 'Asking to cancel…' : 'Asking to retry…',
    asked: cancel ? 'Cancel requested.' : 'Retry requested.',
    noAnswer: `No answer to the ${action} request yet; the status above is the job's own.`,
    request: action,
    verb: action,
  };
}

export class JobList {
  /**
   * @param {HTMLOListElement} list  the <ol> the rows live in
   * @param {{onAction: (jobId: string, action: 'cancel'|'retry'|'revoke-share',
   *            onAnswer: (answer: {outcome: string, message: string}) => void,
   *            onError: (error: Error) => void) => Promise<() => void>,
   *          onStatus: (name: string, words: string) => void,
   *          download: (url: string, filename: string) => Promise<void>,
   *          exportBatch?: (batchId: string) => Promise<{fileName: string, ready: number,
   *            total: number, from: string, csvProblem?: string}>,
   *          followBatch?: (batchId: string, onSnapshot: (snapshot) => void,
   *            onError: (error: Error) => void) => () => void,
   *          listName?: (batchId: string) => string|null}} hooks
   */
  constructor(list, hooks) {
    this.list = list;
    this.hooks = hooks;
    this.rows = new Map();
    this.headers = new Map(); // group key -> BatchHeader
    this.follows = new Map(); // batchId -> stop its listener
    this.groupOf = new Map(); // job id -> its group (the last render's)
    this.transitions = []; // status changes since the last render: what may be said aloud
    this.throttle = new Throttle(); // a batch's totals: at most once per 5 s
    this.timer = setInterval(() => this.tick(), 1000);
  }

  /**
   * Applies a query snapshot's changes. `source` names the listener ('main', the user's newest
   * jobs, or a batch's own): a row stays while any listener still has its job. `limit`, the main
   * listener's, says when its window is full: the batches reaching its end are then followed
   * whole (hooks.followBatch), so a batch of 400 shows 400 rows.
   */
  apply(snapshot, { source = 'main', limit = Infinity } = {}) {
    const touched = [];
    for (const change of snapshot.docChanges()) {
      const id = change.doc.id;
      let row = this.rows.get(id);
      if (change.type === 'removed') {
        if (!row) continue;
        row.sources.delete(source);
        if (!row.sources.size) this.removeRow(row);
        continue;
      }
      if (!row) {
        row = this.createRow(id);
        this.rows.set(id, row);
      }
      row.sources.add(source);
      row.incoming = change.doc.data({ serverTimestamps: 'estimate' });
      touched.push(row);
    }
    if (source === 'main') this.followFullBatches(snapshot, limit);
    this.render(touched);
  }

  followFullBatches(snapshot, limit) {
    if (!this.hooks.followBatch) return;
    const window = snapshot.docs.map((d) => ({ batchId: d.get('batchId'), createdAt: d.get('createdAt', { serverTimestamps: 'estimate' }) }));
    for (const batchId of batchesAtCutoff(window, { full: snapshot.size >= limit })) {
      if (this.follows.has(batchId)) continue;
      this.follows.set(batchId, this.hooks.followBatch(
        batchId,
        (batchSnapshot) => this.apply(batchSnapshot, { source: `batch:${batchId}` }),
        () => this.follows.get(batchId)?.(), // the main list still shows what it has
      ));
    }
  }

  removeRow(row) {
    this.stopWatching(row);
    row.el.remove();
    this.rows.delete(row.id);
  }

  get size() {
    return this.rows.size;
  }

  /**
   * Groups, orders and fills the list: `touched` rows take their new data; every row learns its
   * batch (compact or not), every header its counts; then the page's order is set with as few
   * moves as can be, filters applied, queue places written and what is news said.
   */
  render(touched = []) {
    const now = Date.now();
    const jobs = [...this.rows.values()].map((row) => ({ id: row.id, ...(row.incoming ?? row.data) }));
    const groups = groupJobs(jobs, { now });
    const fresh = new Set(touched);
    this.groupOf.clear();
    for (const group of groups) {
      for (const job of group.jobs) {
        this.groupOf.set(job.id, group);
        const row = this.rows.get(job.id);
        if (row.compact !== group.compact || row.headed !== group.headed) {
          this.layoutRow(row, group);
          if (row.data) fresh.add(row);
        }
      }
    }
    for (const row of fresh) {
      this.update(row, row.incoming ?? row.data);
      row.incoming = null;
    }

    // Headers: one per batch of 2 or more; a header whose batch is gone goes.
    const counted = new Map();
    for (const group of groups) {
      if (!group.headed) continue;
      let header = this.headers.get(group.key);
      if (!header) {
        header = new BatchHeader(group.batchId, {
          onFilter: (target) => this.applyFilter(target),
          listName: this.hooks.listName,
          exportBatch: this.hooks.exportBatch,
          announce: (words) => this.say(words),
        });
        this.headers.set(group.key, header);
      }
      const counts = countJobs(group.jobs);
      counted.set(group.key, counts);
      header.update(group, counts, now);
    }
    for (const [key, header] of this.headers) {
      if (counted.has(key)) continue;
      header.el.remove();
      this.headers.delete(key);
      this.throttle.forget(key);
    }

    this.arrange(groups.flatMap((group) => [
      group.headed ? this.headers.get(group.key).el : null,
      ...group.jobs.map((job) => this.rows.get(job.id).el),
    ]).filter(Boolean));
    for (const header of this.headers.values()) this.applyFilter(header);
    for (const group of groups) {
      if (!group.headed) for (const job of group.jobs) show(this.rows.get(job.id).el, true);
    }

    const ahead = queuePositions(jobs);
    for (const row of this.rows.values()) {
      const words = queueWords(ahead.get(row.id));
      setText(row.queue, words);
      show(row.queue, Boolean(words));
    }
    this.announce(groups, counted, now);
  }

  /** Puts the list's items in `desired` order, moving only those off a longest kept run. */
  arrange(desired) {
    const wanted = new Set(desired);
    for (const child of [...this.list.children]) if (!wanted.has(child)) child.remove();
    const position = new Map([...this.list.children].map((el, i) => [el, i]));
    const staying = stayingIndexes(desired.map((el) => position.get(el) ?? -1));
    const focused = document.activeElement;
    // From the end: each item that moves goes right before the one after it.
    let next = null;
    for (let i = desired.length - 1; i >= 0; i--) {
      const el = desired[i];
      if (!staying.has(i) && (el.parentNode !== this.list || el.nextElementSibling !== next)) this.list.insertBefore(el, next);
      next = el;
    }
    // A moved row drops the keyboard's focus: it goes back where it was.
    if (focused && focused !== document.activeElement && focused.isConnected) focused.focus({ preventScroll: true });
  }

  /** A batch's rows, shown or not by its header's filter. */
  applyFilter(header) {
    for (const job of header.jobs) {
      const row = this.rows.get(job.id);
      if (row) show(row.el, matchesFilter(header.filter, row.status));
    }
  }

  /**
   * What is said aloud: each failure by name (failures that came together, one sentence per
   * reason); in a compact batch its totals when they change, at most once per 5 s; elsewhere a
   * row's end by name ("Anna Smith: Done"). Stages are not said: the list shows them.
   */
  announce(groups, counted, now) {
    const transitions = this.transitions.splice(0);
    const failures = [];
    for (const { row, status } of transitions) {
      const name = row.data?.prospectName ?? '';
      if (status === 'failed') failures.push({ name, error: row.data?.error });
      else if ((status === 'completed' || status === 'cancelled') && !this.groupOf.get(row.id)?.compact) {
        this.hooks.onStatus(name, statusWords(status));
      }
    }
    for (const words of failureWords(failures)) this.say(words);
    for (const group of groups) {
      if (!group.compact) continue;
      const counts = counted.get(group.key);
      const words = totalsWords(counts);
      // A batch just shown, or grown as its jobs were read, is not news.
      const header = this.headers.get(group.key);
      if (!this.throttle.has(group.key) || header.saidTotal !== counts.total) {
        this.throttle.seed(group.key, words);
        header.saidTotal = counts.total;
        continue;
      }
      const due = this.throttle.note(group.key, words, now);
      if (due) this.say(due);
    }
  }

  say(words) {
    this.hooks.onStatus('', words);
  }

  /** A row's shape as its batch wants it: compact (a batch of more than 10) or the full card. */
  layoutRow(row, group) {
    row.compact = group.compact;
    row.headed = group.headed;
    row.el.classList.toggle('job-compact', row.compact);
    // Under its batch's heading, the name is one level down.
    if (row.headed) row.name.setAttribute('aria-level', '4');
    else row.name.removeAttribute('aria-level');
    row.thumb.loading = row.compact ? 'lazy' : 'eager';
    if (!row.compact && row.expanded) this.expand(row, false);
  }

  expand(row, open) {
    row.expanded = open;
    row.el.classList.toggle('job-expanded', open);
    row.expandButton.setAttribute('aria-expanded', String(open));
    setText(row.expandButton, open ? 'Hide video' : 'Show video');
    if (row.data) this.update(row, row.data);
  }

  createRow(id) {
    // note: what the row's last request or download is doing; noteKind says which ('pending'
    // while a request waits for its answer, 'answer' once answered, 'download').
    const row = {
      id, data: null, status: null, noteKind: null, stopWatch: null, answerTimer: null,
      sources: new Set(), incoming: null, compact: null, headed: null, expanded: false,
    };
    row.name = h('h3', { class: 'job-name' });
    row.status_ = h('span', { class: 'job-status' });
    // A waiting job's place in the user's queue: "3 ahead".
    row.queue = h('span', { class: 'job-queue hint', hidden: true });
    row.previewTag = h('span', { class: 'job-preview-tag', hidden: true }, 'Preview');
    row.progress = h('progress', { class: 'job-progress', max: 100, value: 0 });
    row.stages = h('ol', { class: 'job-stages', 'aria-label': 'Stages' });
    row.time = h('p', { class: 'job-time' });
    // What the result was made with: one short muted line each, hidden while there is none.
    row.greetingEnd = h('p', { class: 'hint job-greeting-end', hidden: true });
    row.fit = h('p', { class: 'hint job-fit', hidden: true });
    row.voice = h('p', { class: 'hint job-voice', hidden: true });
    // The error in one line; its whole message and code behind the toggle.
    row.errorText = h('span', { class: 'job-error-text' });
    row.errorCode = h('p', { class: 'job-error-code' });
    row.error = h(
      'details',
      { class: 'job-error', hidden: true },
      h('summary', { class: 'job-error-summary' }, row.errorText),
      row.errorCode,
    );
    row.video = null; // the player, made when first shown (a compact row may never need one)
    row.link = h('a', { class: 'job-download button-link' }, 'Download');
    row.link.addEventListener('click', (event) => this.download(event, row));
    // A compact row's player is made on demand (400 players would each read their video).
    row.expandButton = h('button', { type: 'button', class: 'secondary job-expand', hidden: true, 'aria-expanded': 'false' }, 'Show video');
    row.expandButton.addEventListener('click', () => this.expand(row, !row.expanded));
    row.result = h('div', { class: 'job-result', hidden: true }, row.expandButton, row.link);
    this.createDelivery(row);
    row.cancel = h('button', { type: 'button', class: 'secondary job-cancel', hidden: true }, 'Cancel');
    row.retry = h('button', { type: 'button', class: 'secondary job-retry', hidden: true }, 'Retry');
    row.cancel.addEventListener('click', () => this.act(row, 'cancel'));
    row.retry.addEventListener('click', () => this.act(row, 'retry'));
    // "Edit and retry": for a failure a plain retry would repeat (edit-retry.js).
    row.edit = h('button', { type: 'button', class: 'secondary job-edit', hidden: true, 'aria-expanded': 'false' }, 'Edit and retry');
    row.edit.addEventListener('click', () => this.openEdit(row, row.editForm?.hidden !== false));
    row.editForm = null; // made when first opened (createEditForm)
    // The list the job was sent in, back as the rep's CSV with a link per prospect.
    row.exportBatch = h('button', { type: 'button', class: 'link-button job-export', hidden: true }, 'Export this batch as CSV');
    row.exportBatch.addEventListener('click', () => this.exportBatch(row));
    row.note = h('p', { class: 'job-note', hidden: true });
    row.el = h(
      'li',
      { class: 'job', tabindex: '-1', dataset: { jobId: id } },
      h('div', { class: 'job-head' }, row.name, row.previewTag, h('span', { class: 'job-state' }, row.status_, row.queue)),
      row.progress,
      row.stages,
      row.time,
      row.greetingEnd,
      row.fit,
      row.voice,
      row.error,
      row.result,
      row.delivery,
      h('div', { class: 'job-actions' }, row.cancel, row.retry, row.edit, row.exportBatch),
      row.note,
    );
    return row;
  }

  update(row, data) {
    const previous = row.status;
    row.data = data;
    row.status = data.status;
    const name = data.prospectName ?? '';
    const words = statusWords(data.status);
    setText(row.name, name);
    show(row.previewTag, data.preview === true);
    setText(row.status_, words);
    row.el.dataset.status = data.status ?? '';
    row.el.dataset.batchId = typeof data.batchId === 'string' ? data.batchId : '';
    row.status_.dataset.status = data.status ?? '';

    const progress = Math.max(0, Math.min(100, Number(data.progress) || 0));
    if (row.progress.value !== progress) row.progress.value = progress;
    row.progress.setAttribute('aria-label', `${name}: ${progress}% done`);

    this.renderStages(row, data);
    this.renderTime(row);
    this.renderDetails(row, data);

    // A failure's message; on a pending job, the note why it has not started yet.
    const error = data.status === 'failed' || data.status === 'pending' ? data.error : null;
    show(row.error, Boolean(error?.message));
    if (error?.message) {
      setText(row.errorText, error.message);
      // The sweep retries retryable failures, except rate-limited ones: their owner's Retry does.
      const automatic = error.retryable && error.code !== 'rate-limited';
      const retried = automatic && data.status === 'failed' ? ' (it will be retried)' : '';
      setText(row.errorCode, `Error code: ${error.code}${retried}`);
    }
    row.error.classList.toggle('job-note-only', data.status !== 'failed');

    const url = data.status === 'completed' ? data.downloadUrl : null;
    show(row.result, Boolean(url));
    // A compact row shows its player only when opened; a full card always does.
    const player = Boolean(url) && (!row.compact || row.expanded);
    if (player && !row.video) {
      row.video = h('video', { class: 'job-video', controls: true, preload: 'metadata', playsInline: true });
      row.result.insertBefore(row.video, row.result.children[0] ?? null);
    }
    if (row.video) {
      show(row.video, player);
      if (!player && !row.video.paused) row.video.pause();
    }
    show(row.expandButton, Boolean(url) && Boolean(row.compact));
    if (url) {
      if (player && row.video.getAttribute('src') !== url) row.video.src = url;
      if (row.link.getAttribute('href') !== url) row.link.href = url;
      row.link.download = outputFilename(name, row.id);
      row.link.setAttribute('aria-label', `Download ${name}'s video`);
      row.expandButton.setAttribute('aria-label', `${row.expanded ? 'Hide' : 'Show'} video of ${name}`);
    }

    // A button that goes away while it has focus hands focus to its row, not to the page.
    const focused = row.el.contains(document.activeElement) ? document.activeElement : null;
    show(row.cancel, CANCELLABLE.has(data.status));
    // Retry only where it can help: a failure marked retryable (status.js canRetry).
    show(row.retry, canRetry(data));
    show(row.edit, canEdit(data));
    if (!canEdit(data) && row.editForm && !row.editForm.hidden) this.openEdit(row, false);
    row.edit.setAttribute('aria-label', `Edit and retry ${name}`);
    this.renderDelivery(row, data);
    // A compact batch has its export in its header, not on each of its rows.
    show(row.exportBatch, Boolean(this.hooks.exportBatch && typeof data.batchId === 'string' && data.batchId && data.preview !== true && !row.compact));
    if (focused && (focused.hidden || focused.closest('[hidden]'))) row.el.focus();
    row.cancel.setAttribute('aria-label', `Cancel ${name}`);
    row.retry.setAttribute('aria-label', `Retry ${name}`);
    if (previous && previous !== data.status) {
      row.cancel.removeAttribute('aria-disabled');
      row.retry.removeAttribute('aria-disabled');
      // "Cancel requested." goes with the status it was about; an answer stays to be read.
      if (row.noteKind !== 'answer') show(row.note, false);
    }
    // A row that just appeared is not news; a status it moves to may be (announce() says which).
    if (previous !== null && previous !== data.status) this.transitions.push({ row, status: data.status });
  }

  renderStages(row, data) {
    const history = Array.isArray(data.history) ? data.history : [];
    if (row.stages.childElementCount === history.length) return;
    const start = millis(data.createdAt);
    const items = history.map((entry) => {
      const at = millis(entry.at);
      const offset = at != null && start != null ? `+${formatDuration(Math.max(0, at - start))}` : '';
      const attempt = entry.attempt ? ` (attempt ${entry.attempt + 1})` : '';
      return h(
        'li',
        { dataset: { status: entry.status ?? '' }, title: at != null ? clock(at) : null },
        h('span', { class: 'stage-name' }, `${statusWords(entry.status)}${attempt}`),
        offset ? h('span', { class: 'stage-time' }, ` ${offset}`) : null,
        entry.errorCode ? h('span', { class: 'stage-error' }, ` ${entry.errorCode}`) : null,
      );
    });
    row.stages.replaceChildren(...items);
  }

  renderDetails(row, data) {
    const lines = [
      [row.greetingEnd, greetingEndLabel(data)],
      [row.fit, data.status === 'completed' ? fitSummary(data.fit) : ''],
      [row.voice, voiceLabel(data)],
    ];
    for (const [el, text] of lines) {
      setText(el, text);
      show(el, Boolean(text));
    }
  }

  renderTime(row) {
    const data = row.data;
    const start = millis(data.createdAt);
    const end = millis(data.completedAt);
    let text = '';
    if (start != null && TERMINAL.has(data.status) && end != null) {
      text = `Took ${formatDuration(end - start)}`;
    } else if (start != null && !TERMINAL.has(data.status)) {
      text = `Running for ${formatDuration(Math.max(0, Date.now() - start))}`;
    }
    setText(row.time, text);
  }

  tick() {
    const now = Date.now();
    for (const header of this.headers.values()) header.tick(now);
    for (const words of this.throttle.due(now)) this.say(words);
    for (const row of this.rows.values()) {
      if (row.compact && !row.expanded) continue; // its times are not shown (update() renews them)
      if (row.data && !TERMINAL.has(row.data.status)) this.renderTime(row);
      // "last 3 min ago" moves on by itself.
      else if (row.data?.lastViewedAt && !row.delivery.hidden) this.renderViewers(row);
    }
  }

  // ---- delivery: the share page, its viewers, the email thumbnail (delivery-view.js words) ----

  createDelivery(row) {
    row.thumb = h('img', { class: 'job-thumbnail', width: 120, alt: '', hidden: true, decoding: 'async' });
    row.shareLink = h('a', { class: 'job-share-link', target: '_blank', rel: 'noopener' });
    row.copy = h('button', { type: 'button', class: 'secondary job-share-copy' }, 'Copy link');
    row.copy.addEventListener('click', () => this.copyLink(row));
    row.copyNote = h('span', { class: 'job-copy-note', role: 'status' });
    row.shareLine = h(
      'p',
      { class: 'job-share-line', hidden: true },
      h('span', { class: 'job-share-label' }, 'Share page:'),
      row.shareLink,
      row.copy,
      row.copyNote,
    );
    row.shareState = h('p', { class: 'job-share-state', hidden: true });
    row.viewers = h('p', { class: 'hint job-viewers', hidden: true });
    // Stopping is for good (the link stops working for every prospect who has it): asked twice.
    row.stopShare = h('button', { type: 'button', class: 'secondary job-share-stop', hidden: true }, 'Stop sharing');
    row.stopConfirm = h('button', { type: 'button', class: 'job-share-stop-confirm' }, 'Yes, stop sharing');
    row.keepSharing = h('button', { type: 'button', class: 'secondary job-share-keep' }, 'Keep sharing');
    row.confirm = h(
      'div',
      { class: 'job-share-confirm', hidden: true },
      h('p', { class: 'job-share-confirm-text' }, STOP_WORDS.confirm),
      row.stopConfirm,
      row.keepSharing,
    );
    row.stopShare.addEventListener('click', () => {
      show(row.stopShare, false);
      show(row.confirm, true);
      row.stopConfirm.focus();
    });
    row.keepSharing.addEventListener('click', () => {
      show(row.confirm, false);
      show(row.stopShare, true);
      row.stopShare.focus();
    });
    row.stopConfirm.addEventListener('click', () => {
      show(row.confirm, false);
      show(row.stopShare, true);
      row.stopShare.focus();
      this.act(row, 'revoke-share');
    });
    row.delivery = h(
      'div',
      { class: 'job-delivery', hidden: true },
      row.thumb,
      h(
        'div',
        { class: 'job-share' },
        row.shareLine,
        row.shareState,
        row.viewers,
        h('div', { class: 'job-share-actions' }, row.stopShare),
        row.confirm,
      ),
    );
  }

  renderDelivery(row, data) {
    const reducedMotion = Boolean(REDUCED_MOTION?.matches);
    const view = deliveryOf(data, { reducedMotion });
    show(row.delivery, Boolean(view));
    if (!view) return;
    const name = data.prospectName ?? '';
    show(row.thumb, Boolean(view.thumbnail));
    if (view.thumbnail) {
      if (row.thumb.getAttribute('src') !== view.thumbnail.src) row.thumb.src = view.thumbnail.src;
      if (row.thumb.alt !== view.thumbnail.alt) row.thumb.alt = view.thumbnail.alt;
    }
    const shared = view.share === 'shared';
    show(row.shareLine, shared);
    if (shared) {
      if (row.shareLink.getAttribute('href') !== view.shareUrl) row.shareLink.href = view.shareUrl;
      setText(row.shareLink, view.shareUrl);
      row.copy.setAttribute('aria-label', `Copy link: ${name}'s share page`);
    }
    setText(row.shareState, view.stateText);
    show(row.shareState, Boolean(view.stateText));
    this.renderViewers(row);
    // Stop sharing while there is a share to stop (and its confirmation is not the one showing).
    if (!view.canStop) show(row.confirm, false);
    show(row.stopShare, view.canStop && row.confirm.hidden);
    row.stopShare.setAttribute('aria-label', `Stop sharing ${name}'s video`);
  }

  renderViewers(row) {
    const words = deliveryOf(row.data)?.viewers ?? '';
    setText(row.viewers, words);
    show(row.viewers, Boolean(words));
  }

  async copyLink(row) {
    const url = row.shareLink.getAttribute('href') ?? '';
    let result = 'selected';
    try {
      await navigator.clipboard.writeText(url);
      result = 'copied';
    } catch {
      // No clipboard here (an insecure origin, a refused permission): the link is selected, so
      // the rep's own copy takes it, and the browser's copy command is tried.
      const range = document.createRange();
      range.selectNodeContents(row.shareLink);
      const selection = window.getSelection();
      selection?.removeAllRanges();
      selection?.addRange(range);
      try {
        if (document.execCommand('copy')) result = 'copied';
      } catch {
        // selected it stays
      }
    }
    setText(row.copyNote, copyWords(result));
  }

  async exportBatch(row) {
    const batchId = row.data?.batchId;
    const button = row.exportBatch;
    if (!batchId || button.getAttribute('aria-disabled') === 'true') return;
    button.setAttribute('aria-disabled', 'true');
    this.setNote(row, 'export', 'Making the CSV…');
    try {
      const result = await this.hooks.exportBatch(batchId);
      this.setNote(row, 'export', exportDoneText(result));
    } catch (error) {
      this.setNote(row, 'export', exportFailedText(error));
    } finally {
      button.removeAttribute('aria-disabled');
    }
  }

  createEditForm(row) {
    const id = `edit-${row.id}`;
    const field = (name, label, attrs = {}) => {
      const input = h('input', { id: `${id}-${name}`, name, 'aria-describedby': `${id}-error`, ...attrs });
      return [input, h('div', { class: 'edit-field' }, h('label', { for: input.id }, label), input)];
    };
    const [end, endField] = field('greetingEnd', 'Greeting ends at (seconds)', { type: 'number', min: '0.01', max: '10', step: '0.01', inputmode: 'decimal' });
    const [first, firstField] = field('firstName', 'First name (what the voice says)', { type: 'text', maxlength: '100' });
    const [text, textField] = field('greetingText', 'Greeting text (empty: the default)', { type: 'text', maxlength: '200' });
    const [said, saidField] = field('pronunciation', 'Pronunciation (optional)', { type: 'text', maxlength: '100' });
    const all = h('input', { type: 'checkbox', id: `${id}-all`, name: 'all', checked: true });
    const allLabel = h('label', { for: all.id });
    const allField = h('div', { class: 'edit-all', hidden: true }, all, allLabel);
    const error = h('p', { class: 'error', id: `${id}-error`, role: 'alert', hidden: true });
    const submit = h('button', { type: 'submit' }, 'Retry with these changes');
    const keep = h('button', { type: 'button', class: 'secondary' }, 'Keep as is');
    row.editForm = h(
      'form',
      { class: 'job-edit-form', hidden: true, 'aria-label': 'Edit and retry', noValidate: true },
      endField, firstField, textField, saidField, allField, error,
      h('div', { class: 'actions' }, submit, keep),
    );
    row.editInputs = { end, first, text, said, all, allLabel, allField, error };
    keep.addEventListener('click', () => {
      this.openEdit(row, false);
      row.edit.focus();
    });
    row.editForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submitEdit(row);
    });
    row.editForm.addEventListener('input', () => {
      show(error, false); // cleared on fix
      setText(error, '');
    });
  }

  /** Opens (filled from the job) or closes a row's edit form. */
  openEdit(row, open) {
    if (!row.editForm) {
      if (!open) return;
      this.createEditForm(row);
      row.el.insertBefore(row.editForm, row.note);
    }
    const inputs = row.editInputs;
    show(row.editForm, open);
    row.edit.setAttribute('aria-expanded', String(open));
    if (!open) return;
    const job = row.data ?? {};
    inputs.end.value = job.greetingEndSecond == null ? '' : String(job.greetingEndSecond);
    inputs.first.value = job.firstName ?? '';
    inputs.text.value = job.greetingText ?? '';
    inputs.said.value = job.pronunciation ?? '';
    show(inputs.error, false);
    const others = this.editTargets(row).length - 1;
    show(inputs.allField, others > 0);
    setText(inputs.allLabel, `Also give the ${others} other failed ${others === 1 ? 'job' : 'jobs'} of this batch this greeting end and text`);
    inputs.end.focus();
  }

  /** This job and the batch's other failed jobs an edit can fix (the rows the page has). */
  editTargets(row) {
    const jobs = [...this.rows.values()].filter((r) => r.data).map((r) => ({ id: r.id, ...r.data }));
    return sameBatchFailures({ id: row.id, ...row.data }, jobs);
  }

  async submitEdit(row) {
    const inputs = row.editInputs;
    const job = row.data ?? {};
    const checked = changesFrom({
      greetingEnd: inputs.end.value,
      greetingText: inputs.text.value,
      firstName: inputs.first.value,
      pronunciation: inputs.said.value,
    }, job);
    if (checked.error) {
      setText(inputs.error, checked.error);
      show(inputs.error, true);
      ({ greetingEnd: inputs.end, greetingText: inputs.text, firstName: inputs.first, pronunciation: inputs.said })[checked.field]?.focus();
      return;
    }
    const { changes } = checked;
    // The greeting end and text may go to the whole batch; a first name is this prospect's own.
    const shared = Object.fromEntries(Object.entries(changes).filter(([k]) => k === 'greetingEndSecond' || k === 'greetingText'));
    const own = Object.fromEntries(Object.entries(changes).filter(([k]) => !(k in shared)));
    const targets = inputs.all.checked && !inputs.allField.hidden && Object.keys(shared).length
      ? this.editTargets(row).map((j) => j.id) : [row.id];
    this.openEdit(row, false);
    for (const id of targets) {
      const target = this.rows.get(id);
      if (target) this.setNote(target, 'pending', 'Asking to retry with the changes…');
    }
    try {
      const answers = await this.hooks.onEditRetry(targets, shared, (id) => (id === row.id ? own : {}));
      answers.forEach(({ jobId, watch }) => {
        const target = this.rows.get(jobId);
        if (!target) return;
        this.stopWatching(target);
        this.setNote(target, 'pending', 'Retry with changes requested.');
        target.stopWatch = watch(
          (answer) => {
            this.stopWatching(target);
            const said = requestAnswerText('retry', answer);
            this.setNote(target, 'answer', said);
            if (said) this.hooks.onStatus(target.data?.prospectName ?? '', said);
          },
          (error) => this.setNote(target, 'answer', `The answer could not be read: ${error.message}`),
        );
      });
      if (targets.length > 1) this.hooks.onStatus('', `Retrying ${targets.length} failed jobs with the changes.`);
    } catch (error) {
      this.setNote(row, 'answer', `Could not retry: ${error.message}`);
      row.edit.focus();
    }
  }

  setNote(row, kind, text) {
    row.noteKind = kind;
    setText(row.note, text);
    show(row.note, Boolean(text));
  }

  stopWatching(row) {
    if (!row) return;
    row.stopWatch?.();
    row.stopWatch = null;
    clearTimeout(row.answerTimer);
    row.answerTimer = null;
  }

  async act(row, action) {
    // aria-disabled, not disabled: a disabled button would drop keyboard focus to the page.
    const button = { cancel: row.cancel, retry: row.retry, 'revoke-share': row.stopShare }[action];
    if (button.getAttribute('aria-disabled') === 'true') return;
    const words = requestWords(action);
    button.setAttribute('aria-disabled', 'true');
    this.stopWatching(row); // an earlier request's answer no longer matters
    this.setNote(row, 'pending', words.asking);
    // Every request is answered on its document (triggers/main.py): the row shows the answer.
    const onAnswer = (answer) => {
      this.stopWatching(row);
      button.removeAttribute('aria-disabled'); // a refused retry may be asked again
      const text = action === 'revoke-share' ? revokeAnswerText(answer) : requestAnswerText(action, answer);
      this.setNote(row, 'answer', text);
      if (text) this.hooks.onStatus(row.data?.prospectName ?? '', text);
    };
    const onError = (error) => {
      this.stopWatching(row);
      this.setNote(row, 'answer', `The answer to the ${words.request} request could not be read: ${error.message}`);
    };
    try {
      const stop = await this.hooks.onAction(row.id, action, onAnswer, onError);
      if (row.noteKind !== 'pending') {
        stop?.(); // answered (or failed) already
        return;
      }
      row.stopWatch = stop ?? null;
      this.setNote(row, 'pending', words.asked);
      row.answerTimer = setTimeout(() => {
        this.stopWatching(row);
        button.removeAttribute('aria-disabled');
        this.setNote(row, 'answer', words.noAnswer);
      }, ANSWER_TIMEOUT_MS);
    } catch (error) {
      button.removeAttribute('aria-disabled');
      this.setNote(row, 'answer', `Could not ${words.verb}: ${error.message}`);
    }
  }

  async download(event, row) {
    // The link works on its own (same origin); the fetch keeps the file name across origins.
    event.preventDefault();
    const { href, download } = row.link;
    this.setNote(row, 'download', 'Downloading…');
    try {
      await this.hooks.download(href, download);
      show(row.note, false);
    } catch {
      // The storage server may not allow reading from this page (CORS): open it instead.
      show(row.note, false);
      window.open(href, '_blank', 'noopener');
    }
  }

  clear() {
    for (const row of this.rows.values()) this.stopWatching(row);
    for (const stop of this.follows.values()) stop?.();
    this.follows.clear();
    this.list.replaceChildren();
    this.rows.clear();
    this.headers.clear();
    this.groupOf.clear();
    this.transitions = [];
    this.throttle = new Throttle();
  }

  stop() {
    clearInterval(this.timer);
    this.clear();
  }
}
