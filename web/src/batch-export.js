// "Export this batch as CSV": the batch's jobs read once, the rep's own CSV (when this browser
// kept it: batch-sources.js) filled in as `greetings export` fills it (export-csv.js), and the
// file downloaded. buildExport is pure; exportBatch takes the reading and saving as arguments.

import { sourceOf } from './batch-sources.js';
import { exportCsv, exportFileName, exportJobsCsv } from './export-csv.js';
import { readCsvFile } from './py-csv.js';

/**
 * The file for a batch's `jobs`: the CSV it was sent from with the new columns, or, for typed
 * names, a batch this browser does not remember or a CSV that cannot be read again, one row per
 * job (prospectName, firstName, pronunciation and the new columns).
 * @param {{source: null|{name: string|null, text: string|null}, jobs: object[], batchId: string}} args
 * @returns {{text: string, fileName: string, from: 'csv'|'names'|'unknown'|'unreadable',
 *            csvProblem?: string, ready: number, total: number}}
 */
export function buildExport({ source, jobs, batchId }) {
  const counts = { ready: jobs.filter((job) => job.status === 'completed').length, total: jobs.length };
  const fileName = exportFileName(source?.name, batchId);
  if (source && typeof source.text === 'string') {
    try {
      // Read as the command reads a file (its BOM dropped, its line ends "\n"), named as it is.
      const text = exportCsv(readCsvFile(source.text), jobs, source.name ?? 'the CSV');
      if (text) return { text, fileName, from: 'csv', ...counts };
    } catch (error) {
      return { text: exportJobsCsv(jobs), fileName, from: 'unreadable', csvProblem: error.message, ...counts };
    }
  }
  return { text: exportJobsCsv(jobs), fileName, from: source ? 'names' : 'unknown', ...counts };
}

/** Saves `blob` as a download named `fileName` (an object URL, clicked, then let go). */
export function downloadBlob(blob, fileName) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = fileName;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * Exports the list batch `batchId` was sent with: every batch of that list (a list of more than
 * 400 names is several), read by `listJobs(batchIds)`, saved by `save(blob, fileName)`.
 * Resolves to what buildExport made (without its text).
 */
export async function exportBatch({ storage, uid, batchId, listJobs, save = downloadBlob }) {
  const source = storage ? sourceOf(storage, uid, batchId) : null;
  const jobs = await listJobs(source?.batchIds ?? [batchId]);
  if (!jobs.length) throw new Error('none of this batch\'s jobs are left (deleted?)');
  const { text, ...result } = buildExport({ source, jobs, batchId });
  // The same bytes as `greetings export` writes: UTF-8, no byte-order mark, CRLF.
  save(new Blob([text], { type: 'text/csv;charset=utf-8' }), result.fileName);
  return result;
}
