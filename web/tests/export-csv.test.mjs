// The page's "Export CSV" (web/src/export-csv.js) against `greetings export`
// (greetings/client/export.py): tests/unit/test_export.py ported, and the same bytes as the
// command for the same 40-row CRM list (web/tests/fixtures/, which test_export.py checks the
// Python side against). No browser.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  NEW_COLUMNS, exportCsv, exportFileName, exportJobsCsv, prospectsFromCsv, pyRepr,
} from '../src/export-csv.js';
import { readCsv, readCsvFile, writeCsv } from '../src/py-csv.js';

const fixture = (name) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

const FIRST = ['Anna-Lena', 'José', 'Nguyễn', 'Siobhan', 'Zoë', 'Łukasz', 'Αλέξανδρος', 'Дмитрий'];
const LAST = ['Smith', 'García Márquez', 'Thị Minh', "O'Brien", 'van der Berg', 'Wójcik'];

/**
 * 40 prospects as a CRM exports them: extra columns, quoted commas and quotes, a line break
 * inside a cell, a blank name and a repeated one, CRLF line ends (test_export.py crm_csv).
 */
function crmCsv() {
  const rows = [['Email', 'name', 'Company', 'Notes', 'firstName']];
  for (let i = 0; i < 40; i++) {
    let name = `Dr. ${FIRST[i % FIRST.length]} ${LAST[i % LAST.length]}-${i}`;
    const company = i % 3 === 0 ? `Acme ${i}, Inc.` : `The "Best" Co ${i}`;
    const notes = i === 7 ? 'met at SaaStr\nfollow up in Q1' : '';
    if (i === 12) name = '   '; // blank: skipped at submit
    if (i === 20) name = `Dr. ${FIRST[19 % FIRST.length]} ${LAST[19 % LAST.length]}-19`; // a repeat of 19
    rows.push([`p${i}@example.com`, name, company, notes, '']);
  }
  return writeCsv(rows);
}

/** The jobs `greetings submit --names-csv` made from `text`, ended as a batch ends. */
function jobsFor(text) {
  const prospects = prospectsFromCsv(text, 'crm.csv');
  return prospects.rows.map((row, i) => {
    const job = { prospectName: prospects.names[i], batchIndex: row, batchId: 'b1' };
    if (row === 5) {
      return { ...job, status: 'failed', error: { code: 'greeting-too-long', message: 'the greeting does not fit' } };
    }
    return {
      ...job,
      status: 'completed',
      downloadUrl: `https://storage.test/${row}.mp4?sig=a,b`,
      posterUrl: `https://storage.test/${row}.poster.jpg`,
      thumbnailUrl: `https://storage.test/${row}.gif`,
    };
  });
}

const parse = (text) => readCsv(text).rows;

test('the 40 CRM rows give the same bytes as `greetings export`', () => {
  const source = crmCsv();
  assert.equal(source, fixture('crm.csv'), 'the CRM list is written as Python writes it');
  const jobs = jobsFor(source);
  assert.equal(exportCsv(source, jobs, 'crm.csv'), fixture('crm-with-links.csv'));
  assert.equal(exportJobsCsv(jobs), fixture('crm-list.csv'));
});

test('forty CRM rows come back unchanged with the new columns', () => {
  const source = crmCsv();
  const exported = exportCsv(source, jobsFor(source), 'crm.csv');
  const before = parse(source);
  const after = parse(exported);
  assert.equal(after.length, 41);
  assert.equal(before.length, 41);
  assert.deepEqual(after[0], [...before[0], ...NEW_COLUMNS]);
  before.slice(1).forEach((original, i) => {
    assert.deepEqual(after[i + 1].slice(0, original.length), original); // every original cell
  });
  const fresh = after.slice(1).map((row) => Object.fromEntries(NEW_COLUMNS.map((c, j) => [c, row[5 + j]])));
  assert.deepEqual(fresh[0], {
    status: 'completed',
    videoLink: 'https://storage.test/0.mp4?sig=a,b',
    thumbnailUrl: 'https://storage.test/0.poster.jpg',
    gifUrl: 'https://storage.test/0.gif',
    error: '',
  });
  assert.equal(fresh[5].status, 'failed');
  assert.ok(fresh[5].error.startsWith('greeting-too-long: '));
  assert.equal(fresh[7].status, 'completed'); // the cell with a line break kept its row
  assert.deepEqual([fresh[12].status, fresh[12].error], ['skipped', 'blank name']);
  assert.equal(fresh[20].status, 'skipped');
  assert.equal(fresh[20].error, "duplicate name 'Dr. Siobhan García Márquez-19' (first at crm.csv line 22)");
  assert.equal(fresh.filter((n) => n.status === 'completed').length, 37);
});

test('a re-export refreshes its columns instead of adding more', () => {
  const source = crmCsv();
  const jobs = jobsFor(source);
  const once = exportCsv(source, jobs, 'crm.csv');
  jobs[5] = { ...jobs[5], status: 'completed', downloadUrl: 'https://storage.test/5.mp4' };
  const twice = exportCsv(once, jobs, 'crm.csv');
  assert.deepEqual(parse(twice)[0], parse(once)[0]);
  assert.deepEqual(parse(twice)[6].slice(5, 7), ['completed', 'https://storage.test/5.mp4']);
});

test('jobs matched by name where they have no row', () => {
  const source = 'name,Company\r\nAda Lovelace,Analytical\r\nAlan Turing,Bletchley\r\n';
  const jobs = [{ prospectName: 'Alan Turing', status: 'completed', downloadUrl: 'u' }];
  const rows = parse(exportCsv(source, jobs));
  assert.deepEqual(rows.slice(1).map((r) => r[2]), ['not sent', 'completed']);
});

test('without the CSV: one row per job in the list\'s order', () => {
  const jobs = [
    { prospectName: 'B', batchIndex: 1, status: 'completed', downloadUrl: 'u1' },
    {
      prospectName: 'A', batchIndex: 0, status: 'failed', firstName: 'Al',
      error: { code: 'input-not-video', message: 'not a video' },
    },
  ];
  const rows = parse(exportJobsCsv(jobs));
  assert.deepEqual(rows[0], ['prospectName', 'firstName', 'pronunciation', ...NEW_COLUMNS]);
  assert.deepEqual(rows[1].slice(0, 4), ['A', 'Al', '', 'failed']);
  assert.equal(rows[1].at(-1), 'input-not-video: not a video');
  assert.deepEqual(rows[2].slice(0, 5), ['B', '', '', 'completed', 'u1']);
});

test('the video link is the share page while it is shared', () => {
  const job = { status: 'completed', downloadUrl: 'https://signed', shareUrl: 'https://x/v/s' };
  assert.equal(parse(exportJobsCsv([job]))[1][4], 'https://x/v/s');
  assert.equal(parse(exportJobsCsv([{ ...job, shareRevoked: true }]))[1][4], 'https://signed');
});

test('blank lines are no rows: the jobs\' batchIndex counts data rows as submit does', () => {
  // A blank line between rows is kept as it is and not counted; a row of empty cells is.
  const source = 'name,company\n\nAda,A\n,B\nBo,C\n';
  const prospects = prospectsFromCsv(source, 'p.csv');
  assert.deepEqual([prospects.names, prospects.rows], [['Ada', 'Bo'], [0, 2]]);
  const jobs = [
    { prospectName: 'Ada', batchIndex: 0, status: 'completed', shareUrl: 'https://x/v/a' },
    { prospectName: 'Bo', batchIndex: 2, status: 'pending' },
  ];
  assert.equal(
    exportCsv(source, jobs, 'p.csv'),
    'name,company,status,videoLink,thumbnailUrl,gifUrl,error\r\n\r\nAda,A,completed,https://x/v/a,,,\r\n'
      + ',B,skipped,,,,blank name\r\nBo,C,pending,,,,\r\n',
  );
});

test('skipped rows say why in the command\'s words, Python quotes and all', () => {
  const source = 'name\r\nAnn\r\nann\r\n"Tab\tName"\r\n<b>\r\nit\'s\r\n';
  const { skipped } = prospectsFromCsv(source, 'p.csv');
  assert.deepEqual(skipped.map((s) => [s.row, s.where, s.reason]), [
    [1, 'p.csv line 3', "duplicate name 'ann' (first at p.csv line 2)"],
    [2, 'p.csv line 4', "'Tab\\tName': The prospect name contains characters that cannot be spoken (U+0009). Use letters, digits, spaces and . , ' - & ( ) only."],
    [3, 'p.csv line 5', "'<b>': The prospect name contains characters that cannot be spoken ('<', '>'). Use letters, digits, spaces and . , ' - & ( ) only."],
  ]);
  assert.equal(pyRepr("it's"), '"it\'s"');
  assert.equal(pyRepr('a\'b"c'), "'a\\'b\"c'");
  assert.equal(pyRepr('zw\u200bsp'), "'zw\\u200bsp'");
  assert.throws(() => prospectsFromCsv('email\nx\n', 'bad.csv'), /bad\.csv has no `name` \(or `prospectName`\) column; its header is 'email'/);
});

test('a file is read as the command reads it: no byte-order mark, line ends made "\\n"', () => {
  assert.equal(readCsvFile('\uFEFFname\r\nAda\rBo\n'), 'name\nAda\nBo\n');
  // A lone CR inside a line is what Python refuses; read as a file it is a line end.
  assert.throws(() => exportCsv('name\nA\rB\n', []), /new-line character seen in unquoted field/);
  assert.equal(exportCsv(readCsvFile('name\nA\rB\n'), []), 'name,status,videoLink,thumbnailUrl,gifUrl,error\r\nA,not sent,,,,\r\nB,not sent,,,,\r\n');
});

test('the file is named after the list it came from', () => {
  assert.equal(exportFileName('prospects.csv'), 'prospects-with-links.csv');
  assert.equal(exportFileName('Q3 leads.CSV'), 'Q3 leads-with-links.csv');
  assert.equal(exportFileName(null, '3f2a9c1e-77aa-4b1e'), 'batch-3f2a9c1e-with-links.csv');
  assert.equal(exportFileName(undefined), 'prospects-with-links.csv');
});
