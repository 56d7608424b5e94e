// The batch form's draft, kept in localStorage as the rep types so a reload loses nothing but the
// video (a file cannot be kept: the rep chooses it again). One draft per signed-in user, so a
// shared browser never shows one rep's prospects to another. Plain functions; `storage` is
// window.localStorage on the page, any {getItem, setItem, removeItem} in tests.

// The form's text fields, by the draft's name for them (main.js maps them to element ids).
export const DRAFT_FIELDS = [
  'greetingEnd', 'names', 'greetingText', 'followingText', 'senderName', 'ctaText', 'ctaUrl', 'voice', 'voiceId',
];
const MAX_FIELD_CHARS = 200_000; // a pasted list of names is the long one
const MAX_CSV_ROWS = 20_000;
// The CSV's own text is kept for the batch's export (export-csv.js), when it is this small.
const MAX_CSV_TEXT_CHARS = 1_000_000;

export function draftKey(uid) {
  return `greetings.draft.v1.${uid}`;
}

/** The fields whose value differs from the form's default (a draft of defaults is no draft). */
export function draftFromValues(values, defaults = {}) {
  const draft = {};
  for (const field of DRAFT_FIELDS) {
    const value = values?.[field];
    if (typeof value === 'string' && value !== (defaults[field] ?? '')) draft[field] = value;
  }
  const csv = cleanCsv(values?.csv);
  if (csv) draft.csv = csv;
  return draft;
}

export function isEmptyDraft(draft) {
  return !draft || Object.keys(draft).length === 0;
}

const strings = (list, n) => Array.isArray(list) && list.length === n;
const stringOrUndefined = (v) => v === undefined || v === null || typeof v === 'string';

/**
 * A CSV's parsed names ({source, names, firstNames, pronunciations, skipped}, and when kept its
 * `rows`, each name's data row, and its `text`), or null.
 */
function cleanCsv(csv) {
  if (!csv || typeof csv !== 'object' || typeof csv.source !== 'string') return null;
  const { names } = csv;
  if (!Array.isArray(names) || names.length > MAX_CSV_ROWS || !names.every((n) => typeof n === 'string')) return null;
  const firstNames = csv.firstNames ?? [];
  const pronunciations = csv.pronunciations ?? [];
  if (!strings(firstNames, names.length) || !firstNames.every(stringOrUndefined)) return null;
  if (!strings(pronunciations, names.length) || !pronunciations.every(stringOrUndefined)) return null;
  const skipped = Array.isArray(csv.skipped)
    ? csv.skipped.filter((s) => s && typeof s.where === 'string' && typeof s.reason === 'string')
      .map((s) => ({ where: s.where, reason: s.reason }))
    : [];
  const cleaned = {
    source: csv.source,
    names: [...names],
    // JSON has no undefined: a missing first name or pronunciation is stored as null.
    firstNames: firstNames.map((v) => v ?? undefined),
    pronunciations: pronunciations.map((v) => v ?? undefined),
    skipped,
  };
  const { rows, text } = csv;
  if (Array.isArray(rows) && rows.length === names.length && rows.every((r) => Number.isInteger(r) && r >= 0)) {
    cleaned.rows = [...rows];
  }
  if (typeof text === 'string' && text.length <= MAX_CSV_TEXT_CHARS) cleaned.text = text;
  return cleaned;
}

/** What was stored, checked field by field (anything odd is dropped, never trusted). */
export function parseDraft(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return null;
  const draft = {};
  for (const field of DRAFT_FIELDS) {
    const value = raw[field];
    if (typeof value === 'string' && value.length <= MAX_FIELD_CHARS) draft[field] = value;
  }
  const csv = cleanCsv(raw.csv);
  if (csv) draft.csv = csv;
  return isEmptyDraft(draft) ? null : draft;
}

export function loadDraft(storage, uid) {
  try {
    const text = storage.getItem(draftKey(uid));
    return text == null ? null : parseDraft(text);
  } catch {
    return null; // storage blocked (private mode, a policy): no draft
  }
}

/** Stores the draft (removes it when empty); true if stored. A CSV too big to keep is left out. */
export function saveDraft(storage, uid, draft) {
  try {
    if (isEmptyDraft(draft)) {
      storage.removeItem(draftKey(uid));
      return false;
    }
    try {
      storage.setItem(draftKey(uid), JSON.stringify(draft));
    } catch (error) {
      if (!draft.csv) throw error;
      const { csv, ...rest } = draft;
      try {
        // Without the CSV's text first (its export then lists the names), then without the CSV.
        if (typeof csv.text !== 'string') throw error;
        const { text, ...names } = csv;
        storage.setItem(draftKey(uid), JSON.stringify({ ...rest, csv: names }));
      } catch {
        storage.setItem(draftKey(uid), JSON.stringify(rest));
      }
    }
    return true;
  } catch {
    return false;
  }
}

export function clearDraft(storage, uid) {
  try {
    storage.removeItem(draftKey(uid));
  } catch {
    // storage blocked: nothing was kept
  }
}
