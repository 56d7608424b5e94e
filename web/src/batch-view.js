// A batch's header in "My jobs" (jobs-view.js places it above the batch's rows, in the same
// list): its counts in words, a progress bar, the time left while it runs, filters (All /
// Running / Failed / Done as toggle buttons), "Download all" (batch-zip.js) and, for a compact
// batch, "Export as CSV". Words and sums come from batch-model.js.

import { downloadBlob } from './batch-export.js';
import {
  FILTERS, batchTitle, countsWords, emptyFilterWords, etaMs, etaWords, filterCount, progressLabel,
  zipButtonLabel, zipDoneWords, zipEntries, zipFileName, formatBytes,
} from './batch-model.js';
import { ZipRefused, zipVideos } from './batch-zip.js';
import { exportDoneText, exportFailedText } from './delivery-view.js';
import { h, setText, show } from './dom.js';

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
let serial = 0;

export class BatchHeader {
  /**
   * @param {string} batchId
   * @param {{onFilter: (header: BatchHeader) => void,
   *          listName?: (batchId: string) => string|null,
   *          exportBatch?: (batchId: string) => Promise<object>,
   *          announce: (words: string) => void,
   *          save?: (blob: Blob, fileName: string) => void}} hooks
   */
  constructor(batchId, hooks) {
    this.batchId = batchId;
    this.hooks = hooks;
    this.filter = 'all';
    this.jobs = [];
    this.counts = null;
    const id = `batch-${++serial}`;
    this.title = h('h3', { class: 'batch-title', id: `${id}-title` });
    this.when = h('span', { class: 'batch-when hint' });
    this.countsLine = h('span', { class: 'batch-counts' });
    this.eta = h('span', { class: 'batch-eta', hidden: true });
    this.progress = h('progress', { class: 'batch-progress', max: 1, value: 0 });
    this.filterButtons = new Map(FILTERS.map(({ key, label }) => {
      const button = h('button', { type: 'button', class: 'secondary batch-filter', 'aria-pressed': String(key === 'all'), dataset: { filter: key } }, label, ' ', h('span', { class: 'batch-filter-count' }));
      button.addEventListener('click', () => this.setFilter(key));
      return [key, button];
    }));
    this.download = h('button', { type: 'button', class: 'secondary batch-download', hidden: true }, 'Download all');
    this.download.addEventListener('click', () => this.downloadAll());
    this.exportButton = h('button', { type: 'button', class: 'secondary batch-export-csv', hidden: true }, 'Export as CSV');
    this.exportButton.addEventListener('click', () => this.exportCsv());
    this.note = h('p', { class: 'batch-note hint', hidden: true });
    this.empty = h('p', { class: 'batch-empty hint', hidden: true });
    this.el = h(
      'li',
      { class: 'batch', dataset: { batchId } },
      h('div', { class: 'batch-head' }, this.title, this.when),
      h('p', { class: 'batch-summary' }, this.countsLine, this.eta),
      this.progress,
      h(
        'div',
        { class: 'batch-tools' },
        h('div', { class: 'batch-filters', role: 'group', 'aria-label': 'Show in this batch' }, ...this.filterButtons.values()),
        h('div', { class: 'batch-actions' }, this.download, this.exportButton),
      ),
      this.note,
      this.empty,
    );
  }

  /** The batch as it is now: its group (batch-model.js groupJobs) and its counts. */
  update(group, counts, now = Date.now()) {
    this.jobs = group.jobs;
    this.counts = counts;
    this.compact = group.compact;
    const title = batchTitle(counts);
    setText(this.title, title);
    const list = this.listName(now);
    const sent = Number.isFinite(group.newest) ? `sent ${clock(group.newest)}` : '';
    setText(this.when, [sent, list ? `from ${list}` : ''].filter(Boolean).join(' '));
    setText(this.countsLine, countsWords(counts));
    if (this.progress.max !== Math.max(1, counts.total)) this.progress.max = Math.max(1, counts.total);
    if (this.progress.value !== counts.finished) this.progress.value = counts.finished;
    this.progress.setAttribute('aria-label', progressLabel(counts));
    for (const [key, button] of this.filterButtons) {
      setText(button.lastChild, String(filterCount(key, counts)));
    }
    const videos = zipEntries(this.jobs).length;
    show(this.download, videos > 0);
    if (this.download.getAttribute('aria-disabled') !== 'true') setText(this.download, zipButtonLabel(videos));
    show(this.exportButton, Boolean(this.compact && this.hooks.exportBatch));
    const shown = filterCount(this.filter, counts);
    setText(this.empty, shown ? '' : emptyFilterWords(this.filter));
    show(this.empty, !shown);
    this.tick(now);
  }

  /** The file the batch was sent from, if this browser kept it (read again now and then until it is). */
  listName(now = Date.now()) {
    if (this.list == null && (this.listAskedAt ?? -Infinity) <= now - 5_000) {
      this.listAskedAt = now;
      this.list = this.hooks.listName?.(this.batchId) ?? null;
    }
    return this.list;
  }

  /** The time left, from the rate this batch's jobs finished so far (none before the first). */
  tick(now = Date.now()) {
    const words = this.counts?.running ? etaWords(etaMs(this.jobs, now)) : '';
    setText(this.eta, words ? ` · ${words}` : '');
    show(this.eta, Boolean(words));
  }

  setFilter(key) {
    if (this.filter === key) return;
    this.filter = key;
    for (const [k, button] of this.filterButtons) button.setAttribute('aria-pressed', String(k === key));
    if (this.counts) {
      const shown = filterCount(key, this.counts);
      setText(this.empty, shown ? '' : emptyFilterWords(key));
      show(this.empty, !shown);
    }
    this.hooks.onFilter(this);
  }

  setNote(text) {
    setText(this.note, text);
    show(this.note, Boolean(text));
  }

  async downloadAll() {
    const button = this.download;
    if (button.getAttribute('aria-disabled') === 'true') return;
    const entries = zipEntries(this.jobs);
    if (!entries.length) return;
    button.setAttribute('aria-disabled', 'true');
    const fileName = zipFileName(this.listName(), this.batchId);
    this.setNote(`Reading ${entries.length} ${entries.length === 1 ? 'video' : 'videos'}…`);
    try {
      const result = await zipVideos(entries, {
        onProgress: ({ fetched, total, bytes }) => this.setNote(`Reading the videos: ${fetched} of ${total}, ${formatBytes(bytes)} so far…`),
      });
      (this.hooks.save ?? downloadBlob)(result.blob, fileName);
      const words = zipDoneWords({ fileName, count: result.count, bytes: result.blob.size, failed: result.failed.length });
      this.setNote(words);
      this.hooks.announce(words);
    } catch (error) {
      const words = error instanceof ZipRefused ? error.message : `The zip could not be made: ${error?.message ?? error}`;
      this.setNote(words);
      this.hooks.announce(words);
    } finally {
      button.removeAttribute('aria-disabled');
    }
  }

  async exportCsv() {
    const button = this.exportButton;
    if (button.getAttribute('aria-disabled') === 'true' || !this.hooks.exportBatch) return;
    button.setAttribute('aria-disabled', 'true');
    this.setNote('Making the CSV…');
    try {
      this.setNote(exportDoneText(await this.hooks.exportBatch(this.batchId)));
    } catch (error) {
      this.setNote(exportFailedText(error));
    } finally {
      button.removeAttribute('aria-disabled');
    }
  }
}
