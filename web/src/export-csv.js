// The rep's own list back, with a link per prospect: what `greetings export` writes
// (greetings/client/export.py), ported line for line so the page's "Export CSV" gives the same
// bytes for the same jobs. The source CSV comes back row for row, in its order, every original
// column as it was, plus `status`, `videoLink` (the share page while it is shared, else the
// owner's signed link), `thumbnailUrl` (the poster JPEG), `gifUrl` (the GIF) and `error`; a row
// skipped at submit says why, in the words the command uses (greetings/client/prospects.py and
// flows/stages/validate.py clean_name, also ported here: the page's own names.js words differ).
// Plain functions, no DOM.

import { dictRows, readCsv, writeCsv } from './py-csv.js';

export const NEW_COLUMNS = ['status', 'videoLink', 'thumbnailUrl', 'gifUrl', 'error'];
export const LIST_COLUMNS = ['prospectName', 'firstName', 'pronunciation'];

// prospects.py's column names and validate.py's limits.
const NAME_COLUMNS = ['name', 'prospectname', 'prospect_name', 'prospect name'];
const FIRST_NAME_COLUMNS = ['firstname', 'first_name', 'first name'];
const PRONUNCIATION_COLUMNS = ['pronunciation'];
const MAX_NAME_CHARS = 100;
const NAME_PUNCTUATION = new Set([...".,'-&()\u2019\u2018\u2010\u2013"]);
const NO_ROW = 2 ** 30; // export_jobs_csv's key for a job without a batchIndex (1 << 30)

// ---- Python's string behaviour, where the words depend on it ----

// str.isspace(): what str.split() and str.strip() take away.
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACES = new RegExp(`[${PY_SPACE}]+`, 'u');
const PY_EDGES = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu');
const NOT_PRINTABLE = /^[\p{C}\p{Z}]$/u; // str.isprintable(): no Other, no Separator but " "
const CONTROL_OR_FORMAT = /^[\p{Cc}\p{Cf}]$/u;
const LETTER_MARK_NUMBER = /^[\p{L}\p{M}\p{N}]$/u;
// unicodedata.name() of the format characters (Cf) a pasted name may carry; the others have no
// name (controls) or are too rare to be worth carrying here, and show as U+XXXX.
const FORMAT_NAMES = {
  0xad: 'SOFT HYPHEN', 0x600: 'ARABIC NUMBER SIGN', 0x601: 'ARABIC SIGN SANAH',
  0x602: 'ARABIC FOOTNOTE MARKER', 0x603: 'ARABIC SIGN SAFHA', 0x604: 'ARABIC SIGN SAMVAT',
  0x605: 'ARABIC NUMBER MARK ABOVE', 0x61c: 'ARABIC LETTER MARK', 0x6dd: 'ARABIC END OF AYAH',
  0x70f: 'SYRIAC ABBREVIATION MARK', 0x890: 'ARABIC POUND MARK ABOVE',
  0x891: 'ARABIC PIASTRE MARK ABOVE', 0x8e2: 'ARABIC DISPUTED END OF AYAH',
  0x180e: 'MONGOLIAN VOWEL SEPARATOR', 0x200b: 'ZERO WIDTH SPACE', 0x200c: 'ZERO WIDTH NON-JOINER',
  0x200d: 'ZERO WIDTH JOINER', 0x200e: 'LEFT-TO-RIGHT MARK', 0x200f: 'RIGHT-TO-LEFT MARK',
  0x202a: 'LEFT-TO-RIGHT EMBEDDING', 0x202b: 'RIGHT-TO-LEFT EMBEDDING',
  0x202c: 'POP DIRECTIONAL FORMATTING', 0x202d: 'LEFT-TO-RIGHT OVERRIDE',
  0x202e: 'RIGHT-TO-LEFT OVERRIDE', 0x2060: 'WORD JOINER', 0x2061: 'FUNCTION APPLICATION',
  0x2062: 'INVISIBLE TIMES', 0x2063: 'INVISIBLE SEPARATOR', 0x2064: 'INVISIBLE PLUS',
  0x2066: 'LEFT-TO-RIGHT ISOLATE', 0x2067: 'RIGHT-TO-LEFT ISOLATE', 0x2068: 'FIRST STRONG ISOLATE',
  0x2069: 'POP DIRECTIONAL ISOLATE', 0x206a: 'INHIBIT SYMMETRIC SWAPPING',
  0x206b: 'ACTIVATE SYMMETRIC SWAPPING', 0x206c: 'INHIBIT ARABIC FORM SHAPING',
  0x206d: 'ACTIVATE ARABIC FORM SHAPING', 0x206e: 'NATIONAL DIGIT SHAPES',
  0x206f: 'NOMINAL DIGIT SHAPES', 0xfeff: 'ZERO WIDTH NO-BREAK SPACE',
  0xfff9: 'INTERLINEAR ANNOTATION ANCHOR', 0xfffa: 'INTERLINEAR ANNOTATION SEPARATOR',
  0xfffb: 'INTERLINEAR ANNOTATION TERMINATOR', 0xe0001: 'LANGUAGE TAG',
};

const pyStrip = (s) => s.replace(PY_EDGES, '');
const pySplitJoin = (s) => s.split(PY_SPACES).filter(Boolean).join(' ');
// str.casefold() for matching names: upper then lower folds ß, ſ, ﬁ and final sigma as it does.
const casefold = (s) => s.toUpperCase().toLowerCase();
const hex = (n, width) => n.toString(16).padStart(width, '0');

/** repr() of a str: Python's quotes and escapes. */
export function pyRepr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const c of s) {
    const code = c.codePointAt(0);
    if (c === quote || c === '\\') out += `\\${c}`;
    else if (c === '\t') out += '\\t';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (code < 0x20 || code === 0x7f) out += `\\x${hex(code, 2)}`;
    else if (code < 0x7f || !NOT_PRINTABLE.test(c) || c === ' ') out += c;
    else if (code <= 0xff) out += `\\x${hex(code, 2)}`;
    else if (code <= 0xffff) out += `\\u${hex(code, 4)}`;
    else out += `\\U${hex(code, 8)}`;
  }
  return out + quote;
}

/** str() of a value as f-strings and str() write it (None, True, False). */
function pyStr(value) {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  return String(value);
}

/** Python's truth of a value read from a job document. */
function truthy(value) {
  if (value === null || value === undefined || value === false || value === 0 || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.keys(value).length > 0;
  }
  return true;
}

/** `str(value or "")`. */
const orEmpty = (value) => (truthy(value) ? pyStr(value) : '');

// ---- prospects.py and validate.py: which rows submit skipped, and why ----

/** validate.py _describe: the refused characters as the worker names them, five at most. */
function describe(chars) {
  return [...new Set(chars)].slice(0, 5).map((c) => {
    if (!NOT_PRINTABLE.test(c) || c === ' ') return pyRepr(c);
    const code = c.codePointAt(0);
    return FORMAT_NAMES[code] ?? `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  }).join(', ');
}

class NameError_ extends Error {}

/** validate.py clean_name, its message saying `field` for "The prospect name". */
function cleanName(raw, field = 'The prospect name') {
  const name = pySplitJoin(raw.normalize('NFC'));
  if (!name) throw new NameError_(`${field} is empty.`);
  const length = [...name].length;
  if (length > MAX_NAME_CHARS) {
    throw new NameError_(`${field} has ${length} characters; at most ${MAX_NAME_CHARS} are allowed.`);
  }
  const rawRefused = [...raw].filter((c) => CONTROL_OR_FORMAT.test(c) && c !== ' ');
  const refused = rawRefused.length
    ? rawRefused
    : [...name].filter((c) => !(LETTER_MARK_NUMBER.test(c) || c === ' ' || NAME_PUNCTUATION.has(c)));
  if (refused.length) {
    throw new NameError_(`${field} contains characters that cannot be spoken (${describe(refused)}). Use letters, digits, spaces and . , ' - & ( ) only.`);
  }
  return name;
}

/**
 * prospects.py pick_names: the usable names of `[where, raw, rawFirstName, rawPronunciation]`
 * entries, in order, each with its entry's position (`rows`), and the skipped entries with the
 * command's reason.
 * @returns {{names: string[], rows: number[], skipped: {where: string, reason: string, row: number}[]}}
 */
export function pickProspects(entries) {
  const names = [];
  const rows = [];
  const skipped = [];
  const firstSeen = new Map();
  let row = -1;
  for (const [where, raw, rawFirst, rawPronunciation] of entries) {
    row += 1;
    if (raw === null || raw === undefined || !pyStrip(raw)) {
      skipped.push({ where, reason: 'blank name', row });
      continue;
    }
    let name;
    try {
      name = cleanName(raw);
      // spoken_name: a blank first name asks for the fallback word; clean_pronunciation: a
      // blank one says the name as written. Only what is there is checked.
      if (rawFirst !== null && rawFirst !== undefined && pyStrip(rawFirst)) cleanName(rawFirst, 'firstName');
      if (rawPronunciation !== null && rawPronunciation !== undefined && pyStrip(rawPronunciation)) {
        cleanName(rawPronunciation, 'pronunciation');
      }
    } catch (error) {
      if (!(error instanceof NameError_)) throw error;
      skipped.push({ where, reason: `${pyRepr(pyStrip(raw))}: ${error.message}`, row });
      continue;
    }
    const key = casefold(name);
    if (firstSeen.has(key)) {
      skipped.push({ where, reason: `duplicate name ${pyRepr(name)} (first at ${firstSeen.get(key)})`, row });
      continue;
    }
    firstSeen.set(key, where);
    names.push(name);
    rows.push(row);
  }
  return { names, rows, skipped };
}

/** prospects.py names_from_csv: the names of a CSV with a `name` (or `prospectName`) column. */
export function prospectsFromCsv(text, source) {
  const { fieldnames, rows } = dictRows(text.replace(/^\uFEFF/, ''));
  if (!fieldnames || !fieldnames.length) {
    throw new Error(`${source} is empty: it needs a header row with a \`name\` column`);
  }
  const find = (wanted) => fieldnames.find((c) => c && wanted.includes(casefold(pyStrip(c))));
  const column = find(NAME_COLUMNS);
  if (column === undefined) {
    const shown = fieldnames.slice(0, 6).map(pyRepr).join(', ');
    throw new Error(`${source} has no \`name\` (or \`prospectName\`) column; its header is ${shown}`);
  }
  const first = find(FIRST_NAME_COLUMNS);
  const said = find(PRONUNCIATION_COLUMNS);
  return pickProspects(rows.map(({ cells, lineNum }) => [
    `${source} line ${lineNum}`,
    cells.get(column) ?? null,
    first === undefined ? null : (cells.get(first) || ''),
    said === undefined ? null : (cells.get(said) ?? null),
  ]));
}

// ---- export.py ----

/**
 * A job's new columns: its share page (for as long as it is not revoked; else the owner's
 * signed link), the thumbnails' links, or its error in words.
 */
export function jobCells(job) {
  const error = job.error;
  let errorText = '';
  if (error && typeof error === 'object' && !Array.isArray(error) && job.status === 'failed') {
    errorText = `${pyStr(error.code)}: ${pyStr(error.message)}`;
  }
  const shared = truthy(job.shareRevoked) ? null : job.shareUrl;
  return {
    status: orEmpty(job.status),
    videoLink: orEmpty(truthy(shared) ? shared : job.downloadUrl),
    thumbnailUrl: orEmpty(job.posterUrl),
    gifUrl: orEmpty(job.thumbnailUrl),
    error: errorText,
  };
}

function byRow(jobs) {
  const rows = new Map();
  const names = new Map();
  for (const job of jobs) {
    if (Number.isInteger(job.batchIndex)) rows.set(job.batchIndex, job);
    if (typeof job.prospectName === 'string') names.set(casefold(job.prospectName), job);
  }
  return { rows, names };
}

/**
 * `source` (the CSV the jobs were made from, as readCsvFile gives it) with the new columns
 * filled in for each row. Throws as the command would on a CSV it cannot read.
 */
export function exportCsv(source, jobs, sourceName = 'the CSV') {
  const text = source.replace(/^\uFEFF/, '');
  const { rows: table } = readCsv(text);
  if (!table.length) return '';
  const [header, ...body] = table;
  // Columns of an earlier export are refreshed in place, not added again.
  const outHeader = [...header, ...NEW_COLUMNS.filter((column) => !header.includes(column))];
  const where = Object.fromEntries(NEW_COLUMNS.map((column) => [column, outHeader.indexOf(column)]));

  const prospects = prospectsFromCsv(text, sourceName);
  const skipped = new Map(prospects.skipped.map((s) => [s.row, s.reason]));
  const kept = new Map(prospects.rows.map((row, i) => [row, prospects.names[i]]));
  const { rows: byIndex, names: byName } = byRow(jobs);

  const lines = [outHeader];
  let dataRow = -1;
  for (const cells of body) {
    if (!cells.length) { // the submit's reader skips blank lines: so does the count
      lines.push(cells);
      continue;
    }
    dataRow += 1;
    const row = [...cells, ...Array(Math.max(0, outHeader.length - cells.length)).fill('')];
    const name = kept.get(dataRow);
    const job = byIndex.get(dataRow) ?? (name ? byName.get(casefold(name)) : undefined);
    let values;
    if (job !== undefined) {
      values = jobCells(job);
    } else if (skipped.has(dataRow)) {
      values = { status: 'skipped', videoLink: '', thumbnailUrl: '', gifUrl: '', error: skipped.get(dataRow) };
    } else {
      values = { status: 'not sent', videoLink: '', thumbnailUrl: '', gifUrl: '', error: '' };
    }
    for (const column of NEW_COLUMNS) row[where[column]] = values[column];
    lines.push(row);
  }
  return writeCsv(lines);
}

const millis = (value) => {
  if (value && typeof value.toMillis === 'function') return value.toMillis();
  if (value instanceof Date) return value.getTime();
  return typeof value === 'number' ? value : Infinity;
};

/** Without the source CSV: one row per job in the list's order, its name columns and the new ones. */
export function exportJobsCsv(jobs) {
  const key = (job) => ('batchIndex' in job ? job.batchIndex : NO_ROW);
  const ordered = [...jobs].sort((a, b) => (key(a) - key(b)) || (millis(a.createdAt) - millis(b.createdAt)) || 0);
  const lines = [[...LIST_COLUMNS, ...NEW_COLUMNS]];
  for (const job of ordered) {
    const cells = jobCells(job);
    lines.push([...LIST_COLUMNS.map((column) => orEmpty(job[column])), ...NEW_COLUMNS.map((column) => cells[column])]);
  }
  return writeCsv(lines);
}

/** "prospects.csv" -> "prospects-with-links.csv"; a typed list is named after its batch. */
export function exportFileName(sourceName, batchId = '') {
  const base = typeof sourceName === 'string' ? sourceName.replace(/\.csv$/i, '').trim() : '';
  if (base) return `${base}-with-links.csv`;
  const id = String(batchId).replace(/[^A-Za-z0-9_-]+/g, '').slice(0, 8);
  return id ? `batch-${id}-with-links.csv` : 'prospects-with-links.csv';
}
