// The list each batch was sent from, kept in this browser so "Export this batch as CSV" can give
// the rep's own CSV back (export-csv.js): per signed-in user, the 20 latest lists sent, each with
// the ids of its batches (one per 400 names), its file name and its text (null for typed names).
// Plain functions; `storage` is window.localStorage on the page, any {getItem, setItem} in tests.
// Only this browser has them: a batch sent elsewhere exports as a list of its names.

export const MAX_KEPT = 20;
const MAX_BATCH_IDS = 250; // 100,000 names (firestore.rules' largest batchIndex) in 400s

export function sourcesKey(uid) {
  return `greetings.batches.v1.${uid}`;
}

const validId = (id) => typeof id === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(id);

/** A stored record as it may be trusted ({batchIds, name, text, savedAt}), or null. */
function cleanRecord(record) {
  if (!record || typeof record !== 'object') return null;
  const { batchIds, name, text, savedAt } = record;
  if (!Array.isArray(batchIds) || !batchIds.length || batchIds.length > MAX_BATCH_IDS || !batchIds.every(validId)) return null;
  return {
    batchIds: [...batchIds],
    name: typeof name === 'string' && name ? name : null,
    text: typeof text === 'string' ? text : null,
    savedAt: typeof savedAt === 'number' && Number.isFinite(savedAt) ? savedAt : 0,
  };
}

/** What was stored for `uid`, oldest first; [] when nothing (or nothing readable) was. */
export function loadSources(storage, uid) {
  let raw;
  try {
    raw = JSON.parse(storage.getItem(sourcesKey(uid)) ?? '[]');
  } catch {
    return []; // blocked storage, or not JSON
  }
  return Array.isArray(raw) ? raw.map(cleanRecord).filter(Boolean) : [];
}

/** The latest list sent that made batch `batchId`, or null. */
export function sourceOf(storage, uid, batchId) {
  return loadSources(storage, uid).reverse().find((r) => r.batchIds.includes(batchId)) ?? null;
}

/**
 * Remembers the list a batch was sent from: `{batchIds, name, text}` (`text` the CSV as chosen,
 * null for typed names). Keeps the 20 latest; when the storage is full the oldest go first, and a
 * list too big to keep at all is remembered without its text. Returns whether it was stored.
 */
export function rememberBatch(storage, uid, record, now = Date.now()) {
  const fresh = cleanRecord({ ...record, savedAt: now });
  if (!fresh) return false;
  const older = loadSources(storage, uid)
    .filter((r) => !r.batchIds.some((id) => fresh.batchIds.includes(id)))
    .slice(-(MAX_KEPT - 1));
  const attempts = [];
  for (let keep = older.length; keep >= 0; keep--) attempts.push([...older.slice(older.length - keep), fresh]);
  if (fresh.text !== null) attempts.push([{ ...fresh, text: null }]);
  for (const list of attempts) {
    try {
      storage.setItem(sourcesKey(uid), JSON.stringify(list));
      return true;
    } catch {
      // full (or blocked): try with less
    }
  }
  return false;
}

/**
 * Where each name of a batch sits in the rep's list (its job's `batchIndex`) and the list to
 * remember for its export, from the page's names (main.js collectNames): `typed` (names.js
 * namesFromText), `csv` (namesFromCsv's, with the file's `source` name, its `rows` and `text`)
 * and `merged` (pickNames over the typed names, then the CSV's). When every name came from one
 * CSV, a name's row is its data row there (skipped rows counted, as `greetings submit` counts
 * them) and the CSV is the list; typed names are at their place among what was typed; names
 * from both are at their place in the merged list, which is then exported as a list of names.
 * @returns {{rows: number[], source: {name: string|null, text: string|null}}}
 */
export function listOrigin({ typed, csv, merged }) {
  const noList = { name: null, text: null };
  if (!csv) return { rows: merged.rows.map((i) => typed.rows[i]), source: noList };
  const rowsKept = Array.isArray(csv.rows) && csv.rows.length === csv.names.length;
  if (typed.names.length === 0 && rowsKept) {
    return {
      rows: merged.rows.map((i) => csv.rows[i]),
      source: { name: csv.source ?? null, text: typeof csv.text === 'string' ? csv.text : null },
    };
  }
  return { rows: merged.rows, source: noList };
}
