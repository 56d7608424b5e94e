// CSV read and written exactly as Python's `csv` module does with its default dialect (excel),
// so that the page's export (export-csv.js) gives the same bytes as `greetings export`
// (greetings/client/export.py), which reads with `csv.reader` / `csv.DictReader` and writes with
// `csv.writer(lineterminator="\r\n")`. Plain functions, no DOM.

/** Python's csv.Error, with its message. */
export class CsvError extends Error {}

const START_RECORD = 0;
const START_FIELD = 1;
const IN_FIELD = 2;
const IN_QUOTED_FIELD = 3;
const QUOTE_IN_QUOTED_FIELD = 4;
const EAT_CRNL = 5;
const EOL = null; // the end of a line, as CPython's reader feeds it after each line's characters

/**
 * The rows of `text` as `csv.reader(io.StringIO(text))` gives them: a line with nothing on it is
 * an empty row `[]`, a quoted field may span lines, a quote inside an unquoted field is kept
 * (non-strict), and a carriage return followed by more text on its line is the error Python
 * raises. `lines[i]` is the reader's `line_num` once row i was read (its last physical line).
 * @returns {{rows: string[][], lines: number[]}}
 */
export function readCsv(text) {
  const rows = [];
  const lines = [];
  let fields = [];
  let field = '';
  let state = START_RECORD;
  let lineNum = 0;

  const saveField = () => {
    fields.push(field);
    field = '';
  };
  const endOfLine = (c) => c === '\n' || c === '\r' || c === EOL;

  const processChar = (c) => {
    switch (state) {
      case START_RECORD:
        if (c === EOL) return; // an empty line: the record is []
        if (c === '\n' || c === '\r') {
          state = EAT_CRNL;
          return;
        }
        state = START_FIELD;
      // falls through: a normal character starts a field
      case START_FIELD:
        if (endOfLine(c)) {
          saveField();
          state = c === EOL ? START_RECORD : EAT_CRNL;
        } else if (c === '"') {
          state = IN_QUOTED_FIELD;
        } else if (c === ',') {
          saveField();
        } else {
          field += c;
          state = IN_FIELD;
        }
        return;
      case IN_FIELD:
        if (endOfLine(c)) {
          saveField();
          state = c === EOL ? START_RECORD : EAT_CRNL;
        } else if (c === ',') {
          saveField();
          state = START_FIELD;
        } else {
          field += c;
        }
        return;
      case IN_QUOTED_FIELD:
        if (c === EOL) return; // the line's own "\n" was kept as a character already
        if (c === '"') state = QUOTE_IN_QUOTED_FIELD;
        else field += c;
        return;
      case QUOTE_IN_QUOTED_FIELD:
        if (c === '"') {
          field += c; // "" is "
          state = IN_QUOTED_FIELD;
        } else if (c === ',') {
          saveField();
          state = START_FIELD;
        } else if (endOfLine(c)) {
          saveField();
          state = c === EOL ? START_RECORD : EAT_CRNL;
        } else {
          field += c; // not strict: `"ab"c` is abc
          state = IN_FIELD;
        }
        return;
      case EAT_CRNL:
        if (c === '\n' || c === '\r') return;
        if (c === EOL) {
          state = START_RECORD;
          return;
        }
        throw new CsvError('new-line character seen in unquoted field - do you need to open the file in universal-newline mode?');
      default:
        throw new Error(`csv reader in an unknown state ${state}`);
    }
  };

  // io.StringIO hands the reader one line at a time, each ending at (and keeping) its "\n".
  for (const line of text.match(/[^\n]*\n|[^\n]+$/g) ?? []) {
    lineNum += 1;
    for (const c of line) processChar(c);
    processChar(EOL);
    if (state === START_RECORD) {
      rows.push(fields);
      lines.push(lineNum);
      fields = [];
    }
  }
  // The text ended inside a quoted field: what was read is the last row.
  if (state !== START_RECORD && (field !== '' || state === IN_QUOTED_FIELD)) {
    saveField();
    rows.push(fields);
    lines.push(lineNum);
  }
  return { rows, lines };
}

/**
 * `csv.DictReader` over `text`: its `fieldnames` (the first row; null for no text) and its data
 * rows, blank lines skipped, each a Map from field name to cell as Python builds the dict (a
 * repeated field name keeps the last cell; a short row's missing cells are null, a long row's
 * extra cells are under the key null), with the reader's `line_num` after it.
 * @returns {{fieldnames: string[]|null, rows: {cells: Map<string|null, *>, lineNum: number}[]}}
 */
export function dictRows(text) {
  const { rows, lines } = readCsv(text);
  if (!rows.length) return { fieldnames: null, rows: [] };
  const fieldnames = rows[0];
  const out = [];
  for (let i = 1; i < rows.length; i++) {
    const row = rows[i];
    if (!row.length) continue; // DictReader skips blank lines
    const cells = new Map();
    const n = Math.min(fieldnames.length, row.length);
    for (let j = 0; j < n; j++) cells.set(fieldnames[j], row[j]);
    if (fieldnames.length < row.length) cells.set(null, row.slice(fieldnames.length));
    else for (const key of fieldnames.slice(row.length)) cells.set(key, null);
    out.push({ cells, lineNum: lines[i] });
  }
  return { fieldnames, rows: out };
}

/** One field as the writer puts it: quoted only when it holds a comma, a quote or a line break. */
function writeField(value) {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * Rows as `csv.writer(out, lineterminator="\r\n").writerows(rows)` writes them (QUOTE_MINIMAL):
 * CRLF after every row, and a row of one empty field written `""` so it stays a row.
 */
export function writeCsv(rows) {
  return rows.map((row) => {
    const text = row.length === 1 && row[0] === '' ? '""' : row.map((cell) => writeField(String(cell))).join(',');
    return `${text}\r\n`;
  }).join('');
}

/**
 * The text of a CSV file as `greetings` reads one (greetings/commands/submit.py read_csv_file:
 * UTF-8 with its byte-order mark dropped, line ends made "\n" as Python's text mode does), so the
 * page exports what the command would from the same file.
 */
export function readCsvFile(text) {
  return text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
}
