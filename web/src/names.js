// Prospect names from what a user types, pastes or drops: plain functions, no DOM.
// They clean names the way the pipeline does (flows/stages/validate.py `clean_name`), so a name
// the pipeline would refuse is reported here, before any job is created.

export const MAX_NAME_CHARS = 100;
const NAME_COLUMNS = ['name', 'prospectname', 'prospect_name', 'prospect name'];
// An optional column saying what to call each prospect (the job's `firstName`), matched as the
// CLI matches it (greetings/client/prospects.py FIRST_NAME_COLUMNS).
const FIRST_NAME_COLUMNS = ['firstname', 'first_name', 'first name'];
// An optional column saying how to say each name ("Sheh-VAWN" for Siobhan: the job's
// `pronunciation`), as the CLI reads it (prospects.py PRONUNCIATION_COLUMNS).
const PRONUNCIATION_COLUMNS = ['pronunciation'];
export const MAX_FOLLOWING_TEXT_CHARS = 200;
// Letters, marks, digits, spaces and the punctuation real names use (as validate.py allows).
const REFUSED = /[^\p{L}\p{M}\p{N} .,'\-&()\u2019\u2018\u2010\u2013]/gu;
const CONTROLS = /[\p{Cc}\p{Cf}]/u;

/** A name trimmed, its inner whitespace collapsed; or throws an Error saying what is wrong. */
export function cleanName(raw) {
  const name = raw.normalize('NFC').split(/\s+/u).filter(Boolean).join(' ');
  if (!name) throw new Error('blank name');
  const length = [...name].length;
  if (length > MAX_NAME_CHARS) {
    throw new Error(`${length} characters; at most ${MAX_NAME_CHARS} are allowed`);
  }
  // Controls (tabs, newlines) are refused, not folded: they are a sign of a broken import.
  if (CONTROLS.test(raw)) throw new Error('contains a control character (a tab or line break?)');
  const refused = [...new Set(name.match(REFUSED) ?? [])];
  if (refused.length) {
    const shown = refused.slice(0, 5).map((c) => `"${c}"`).join(', ');
    throw new Error(`contains characters that cannot be spoken (${shown})`);
  }
  return name;
}

/**
 * The rep's words right after the greeting (the job's `followingText`), trimmed, or undefined
 * when blank; throws an Error when the worker would refuse them (validate.py `following_text`):
 * a sentence may also ask or exclaim.
 */
export function cleanFollowingText(raw) {
  const text = raw.normalize('NFC').split(/\s+/u).filter(Boolean).join(' ');
  if (!text) return undefined;
  const length = [...text].length;
  if (length > MAX_FOLLOWING_TEXT_CHARS) {
    throw new Error(`The words after the greeting are ${length} characters; at most ${MAX_FOLLOWING_TEXT_CHARS} are allowed: the first words are enough.`);
  }
  if (CONTROLS.test(raw)) throw new Error('The words after the greeting contain a control character (a tab or line break?).');
  const refused = [...new Set(text.replace(/[!?]/g, '').match(REFUSED) ?? [])];
  if (refused.length) {
    const shown = refused.slice(0, 5).map((c) => `"${c}"`).join(', ');
    throw new Error(`The words after the greeting contain characters that cannot be spoken (${shown}): write them as they are said.`);
  }
  return text;
}

/**
 * The usable names of `[where, raw, rawFirstName?, rawPronunciation?]` entries, in order:
 * blanks, repeats (case-insensitive, by name) and names the pipeline would refuse are skipped
 * with the reason. A first name or a pronunciation is cleaned like a name and a bad one skips
 * its row; a missing or blank first name leaves `firstNames[i]` undefined, so the pipeline
 * derives it from the name, and a missing or blank pronunciation leaves `pronunciations[i]`
 * undefined, so the name is said as written. `rows[i]` is the position of name i's entry among
 * all the entries, skipped ones counted (for a CSV's, its data row: the job's `batchIndex`).
 * @returns {{names: string[], firstNames: (string|undefined)[],
 *            pronunciations: (string|undefined)[], rows: number[],
 *            skipped: {where: string, reason: string}[]}}
 */
export function pickNames(entries) {
  const names = [];
  const firstNames = [];
  const pronunciations = [];
  const rows = [];
  const skipped = [];
  const firstSeen = new Map();
  let row = -1;
  for (const [where, raw, rawFirst, rawPronunciation] of entries) {
    row += 1;
    if (raw == null || !raw.trim()) {
      skipped.push({ where, reason: 'blank name' });
      continue;
    }
    let name;
    try {
      name = cleanName(raw);
    } catch (error) {
      skipped.push({ where, reason: `"${raw.trim()}": ${error.message}` });
      continue;
    }
    let firstName;
    if (rawFirst != null && rawFirst.trim()) {
      try {
        firstName = cleanName(rawFirst);
      } catch (error) {
        const reason = `"${name}": first name "${rawFirst.trim()}": ${error.message}`;
        skipped.push({ where, reason });
        continue;
      }
    }
    let pronunciation;
    if (rawPronunciation != null && rawPronunciation.trim()) {
      try {
        pronunciation = cleanName(rawPronunciation);
      } catch (error) {
        const reason = `"${name}": pronunciation "${rawPronunciation.trim()}": ${error.message}`;
        skipped.push({ where, reason });
        continue;
      }
    }
    const key = name.toLocaleLowerCase();
    const first = firstSeen.get(key);
    if (first) {
      skipped.push({ where, reason: `duplicate of "${first.name}" (first at ${first.where})` });
      continue;
    }
    firstSeen.set(key, { name, where });
    names.push(name);
    firstNames.push(firstName);
    pronunciations.push(pronunciation);
    rows.push(row);
  }
  return { names, firstNames, pronunciations, rows, skipped };
}

/**
 * Names typed or pasted: one per line, or separated by commas. Lines that are entirely empty
 * (e.g. the last newline) are not reported; an empty item between two commas is.
 */
export function namesFromText(text) {
  const entries = [];
  text.split(/\r\n|\r|\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const parts = line.split(',');
    parts.forEach((part, j) => {
      const where = parts.length > 1 ? `line ${i + 1}, item ${j + 1}` : `line ${i + 1}`;
      entries.push([where, part]);
    });
  });
  return pickNames(entries);
}

/**
 * RFC 4180 rows: quoted fields may hold commas, doubled quotes and newlines. A row read from a
 * line with nothing on it is marked `empty` (Python's csv reader gives it as [], which the CLI's
 * DictReader skips without counting it).
 */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  let touched = false; // anything read for this row but its line end
  let line = 1;
  let rowLine = 1;
  const src = text.replace(/^\uFEFF/, '');
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c !== '\n' && c !== '\r') touched = true;
    if (quoted) {
      if (c === '"' && src[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"' && field === '') {
      quoted = true;
    } else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && src[i + 1] === '\n') i++;
      row.push(field);
      rows.push({ line: rowLine, cells: row, empty: !touched });
      row = [];
      field = '';
      touched = false;
      line++;
      rowLine = line;
    } else {
      field += c;
    }
  }
  if (field !== '' || row.length) {
    row.push(field);
    rows.push({ line: rowLine, cells: row });
  }
  return rows;
}

/**
 * Names from a CSV whose header has a `name` (or `prospectName`) column and, optionally, a
 * `firstName` (or `first_name`, `first name`; any case) column giving what to call each one and
 * a `pronunciation` column (any case) giving how to say it.
 */
export function namesFromCsv(text, source = 'the CSV') {
  const rows = parseCsv(text).filter((r) => r.cells.some((c) => c.trim()) || r.line > 1);
  if (!rows.length) throw new Error(`${source} is empty: it needs a header row with a "name" column`);
  const header = rows[0].cells.map((c) => c.trim().toLowerCase());
  const column = header.findIndex((c) => NAME_COLUMNS.includes(c));
  if (column < 0) {
    const shown = rows[0].cells.slice(0, 6).map((c) => `"${c}"`).join(', ');
    throw new Error(`${source} has no "name" (or "prospectName") column; its header is ${shown}`);
  }
  const firstColumn = header.findIndex((c) => FIRST_NAME_COLUMNS.includes(c));
  const saidColumn = header.findIndex((c) => PRONUNCIATION_COLUMNS.includes(c));
  // An empty line is no row, as for the CLI (Python's DictReader): the rows left are counted as
  // `greetings submit` counts them, so a name's row (`rows`) is its job's `batchIndex`.
  const data = rows.slice(1).filter((r) => !r.empty);
  // A trailing empty line is no row.
  while (data.length && data.at(-1).cells.every((c) => !c.trim())) data.pop();
  return pickNames(data.map((r) => [
    `${source} line ${r.line}`,
    r.cells[column] ?? '',
    firstColumn < 0 ? undefined : (r.cells[firstColumn] ?? ''),
    saidColumn < 0 ? undefined : r.cells[saidColumn],
  ]));
}

/** `name` as ascii lowercase letters, digits and dashes (never empty), like prospects.py. */
export function slugify(name) {
  const folded = name
    .replace(/[ßæÆøØđĐłŁþÞœŒı]/g, (c) => FOLD[c])
    .normalize('NFKD')
    .replace(/[^\x00-\x7F]/g, '')
    .toLowerCase();
  const slug = folded.replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return slug.slice(0, 60).replace(/-+$/, '') || 'prospect';
}

const FOLD = {
  ß: 'ss', æ: 'ae', Æ: 'AE', ø: 'o', Ø: 'O', đ: 'd', Đ: 'D', ł: 'l', Ł: 'L',
  þ: 'th', Þ: 'Th', œ: 'oe', Œ: 'OE', ı: 'i',
};

/** `<name-slug>-<jobId>.mp4`, the name the CLI gives a downloaded result too. */
export function outputFilename(prospectName, jobId) {
  const safeId = jobId.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '') || 'job';
  return `${slugify(prospectName)}-${safeId}.mp4`;
}

/**
 * The name a preview should make: the one with the most to say (its pronunciation, else its
 * first name, else the whole name), the likeliest not to fit; the first of equals.
 */
export function longestNameIndex(names, firstNames = [], pronunciations = []) {
  let best = 0;
  let bestLength = -1;
  names.forEach((name, i) => {
    const said = pronunciations[i] || firstNames[i] || name;
    if (said.length > bestLength) {
      best = i;
      bestLength = said.length;
    }
  });
  return best;
}
