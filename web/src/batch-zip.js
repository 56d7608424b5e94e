// "Download all": a batch's finished videos read from their links and stored in one zip, built
// in the browser (fflate, MIT: stored, not compressed again; an MP4 does not shrink). Refused
// in words past ZIP_LIMIT_BYTES (batch-model.js zipRefusal). The reading is passed in, so this
// runs under node's test runner as it runs on the page.

import { Zip, ZipPassThrough } from 'fflate';

import { ZIP_LIMIT_BYTES, zipRefusal } from './batch-model.js';

// Videos read ahead of the one being written: a few links at once, never the whole batch.
const READ_AHEAD = 3;
// Output held as JS arrays before it is folded into a Blob (which the browser may keep on disk).
const FOLD_BYTES = 32 * 2 ** 20;

export class ZipRefused extends Error {}

/**
 * The zip of `entries` ([{url, name}], in order), as {blob, count, bytes, failed}: `bytes` is
 * the videos' size, `failed` the entries that could not be read (skipped). Throws ZipRefused
 * (its message in words) past `limit`, and an Error when no video could be read.
 * `onProgress({fetched, total, bytes})` follows it.
 */
export async function zipVideos(entries, {
  fetchFn = globalThis.fetch, limit = ZIP_LIMIT_BYTES, onProgress = () => {},
} = {}) {
  const controller = new AbortController();
  const read = async (entry) => {
    try {
      const response = await fetchFn(entry.url, { signal: controller.signal });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      return { entry, data: new Uint8Array(await response.arrayBuffer()) };
    } catch (error) {
      return { entry, error };
    }
  };

  let folded = new Blob([]);
  let parts = [];
  let partBytes = 0;
  let zipError = null;
  const zip = new Zip((error, chunk) => {
    if (error) {
      zipError = error;
      return;
    }
    parts.push(chunk);
    partBytes += chunk.length;
    if (partBytes >= FOLD_BYTES) {
      folded = new Blob([folded, ...parts]);
      parts = [];
      partBytes = 0;
    }
  });

  const reading = [];
  let next = 0;
  let bytes = 0;
  let count = 0;
  const failed = [];
  try {
    for (let i = 0; i < entries.length; i++) {
      while (reading.length < READ_AHEAD && next < entries.length) reading.push(read(entries[next++]));
      const { entry, data, error } = await reading.shift();
      if (error) {
        failed.push({ ...entry, error });
      } else {
        bytes += data.length;
        const refusal = zipRefusal({ bytes, fetched: i + 1, total: entries.length, limit });
        if (refusal) throw new ZipRefused(refusal);
        const file = new ZipPassThrough(entry.name);
        zip.add(file);
        file.push(data, true);
        count += 1;
      }
      if (zipError) throw zipError;
      onProgress({ fetched: i + 1, total: entries.length, bytes });
    }
  } catch (error) {
    controller.abort(); // the reads still under way are of no use now
    zip.terminate();
    throw error;
  }
  if (!count) {
    zip.terminate();
    const why = failed[0]?.error?.message ?? 'there is none';
    throw new Error(`No video could be read (${why}).`);
  }
  zip.end();
  if (zipError) throw zipError;
  return { blob: new Blob([folded, ...parts], { type: 'application/zip' }), count, bytes, failed };
}
