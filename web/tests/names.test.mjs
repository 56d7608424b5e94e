// The page's name handling, without a browser: what a rep types, pastes or drops.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  cleanFollowingText, cleanName, namesFromCsv, namesFromText, outputFilename, pickNames, slugify,
} from '../src/names.js';
import { formatDuration, statusWords } from '../src/status.js';

test('typed names: one per line or comma separated, trimmed, blanks and repeats skipped', () => {
  const { names, skipped } = namesFromText('  Anna Smith \nBen Jones, , anna smith\n\n\r\nCarla   Díaz\n');
  assert.deepEqual(names, ['Anna Smith', 'Ben Jones', 'Carla Díaz']);
  assert.deepEqual(skipped.map((s) => s.where), ['line 2, item 2', 'line 2, item 3']);
  assert.match(skipped[0].reason, /blank/);
  assert.match(skipped[1].reason, /duplicate of "Anna Smith"/);
});

test('names the pipeline would refuse are reported, not sent', () => {
  assert.throws(() => cleanName('x'.repeat(101)), /101 characters/);
  assert.equal(cleanName('x'.repeat(100)).length, 100);
  assert.throws(() => cleanName('Bobby $(rm -rf)'), /cannot be spoken/);
  assert.throws(() => cleanName('Anna\u202Eevil'), /control character/);
  assert.equal(cleanName("O'Brien-Smith & Co. (Jr.)"), "O'Brien-Smith & Co. (Jr.)");
  assert.equal(cleanName('Zoë'), 'Zoë');
  const { names, skipped } = namesFromText('Ok Name\n<b>Bold</b>');
  assert.deepEqual(names, ['Ok Name']);
  assert.match(skipped[0].reason, /"<", ">", "\/"/);
});

test('CSV: a name or prospectName column, quoted fields, BOM, CRLF, reported lines', () => {
  const csv = '\uFEFFcompany,prospectName\r\nAcme,"Smith, John"\r\nInitech,\r\n"Multi\nline",Ann\r\nX,"Smith, John"\r\n';
  const { names, skipped } = namesFromCsv(csv, 'p.csv');
  assert.deepEqual(names, ['Smith, John', 'Ann']);
  assert.deepEqual(skipped.map((s) => s.where), ['p.csv line 3', 'p.csv line 6']);
  assert.deepEqual(namesFromCsv('Name\nBo\n', 'x.csv').names, ['Bo']);
  assert.throws(() => namesFromCsv('email\na@b.c\n', 'bad.csv'), /no "name" \(or "prospectName"\) column/);
  assert.throws(() => namesFromCsv('', 'empty.csv'), /empty/);
});

test('CSV: a firstName / first_name column (any case) says what to call each prospect', () => {
  const csv = 'Name,FIRST_NAME,company\nDr. Anna-Lena Smith,  Annie  ,Acme\nRobert Jones,,Initech\n'
    + 'Kim Lee,$(id),Hooli\nAl Roe,\u00a0,X\nLong One,' + 'x'.repeat(101) + ',Y\nrobert jones,Bob,Z\nShort Row\n';
  const { names, firstNames, skipped } = namesFromCsv(csv, 'p.csv');
  assert.deepEqual(names, ['Dr. Anna-Lena Smith', 'Robert Jones', 'Al Roe', 'Short Row']);
  // Trimmed; a blank (or missing) cell leaves it unset, for the pipeline to derive.
  assert.deepEqual(firstNames, ['Annie', undefined, undefined, undefined]);
  assert.deepEqual(skipped.map((s) => s.where), ['p.csv line 4', 'p.csv line 6', 'p.csv line 7']);
  assert.match(skipped[0].reason, /^"Kim Lee": first name "\$\(id\)": contains characters that cannot be spoken/);
  assert.match(skipped[1].reason, /^"Long One": first name "x+": 101 characters; at most 100/);
  assert.match(skipped[2].reason, /duplicate of "Robert Jones"/); // dedupe is by name
  assert.deepEqual(namesFromCsv('first name,prospectName\nBo,Robert Bo\n').firstNames, ['Bo']);
  assert.deepEqual(namesFromCsv('firstName,name\nBo,Robert Bo\n').firstNames, ['Bo']);
  // Without the column, none is given.
  assert.deepEqual(namesFromCsv('name\nRobert Bo\n').firstNames, [undefined]);
  // Typed names carry none; merged with a CSV's, the first of a repeated name wins.
  assert.deepEqual(namesFromText('Ann').firstNames, [undefined]);
  const merged = pickNames([['box', 'Ann'], ['p.csv', 'ann', 'Annie'], ['p.csv', 'Bo Li', 'Bo']]);
  assert.deepEqual([merged.names, merged.firstNames], [['Ann', 'Bo Li'], [undefined, 'Bo']]);
});

test('CSV: a pronunciation column (any case) says how to say each name, never replacing it', () => {
  const csv = 'name,Pronunciation,firstName\nSiobhan Kelly,  Sheh-VAWN ,\nAda Lovelace,,Ada\n'
    + 'Kim Lee,<phoneme>,\nAoife Byrne,EE-fa,\nLong One,' + 'x'.repeat(101) + ',\nShort Row\n';
  const { names, firstNames, pronunciations, skipped } = namesFromCsv(csv, 'p.csv');
  // The name stays as written: it is what the job, its card and its file are called.
  assert.deepEqual(names, ['Siobhan Kelly', 'Ada Lovelace', 'Aoife Byrne', 'Short Row']);
  assert.deepEqual(pronunciations, ['Sheh-VAWN', undefined, 'EE-fa', undefined]);
  assert.deepEqual(firstNames, [undefined, 'Ada', undefined, undefined]);
  assert.deepEqual(skipped.map((s) => s.where), ['p.csv line 4', 'p.csv line 6']);
  assert.match(skipped[0].reason, /^"Kim Lee": pronunciation "<phoneme>": contains characters that cannot be spoken/);
  assert.match(skipped[1].reason, /^"Long One": pronunciation "x+": 101 characters; at most 100/);
  // Without the column, or typed, none is given.
  assert.deepEqual(namesFromCsv('name\nBo\n').pronunciations, [undefined]);
  assert.deepEqual(namesFromText('Siobhan').pronunciations, [undefined]);
  const merged = pickNames([['box', 'Ann'], ['p.csv', 'ann', undefined, 'Ahn'], ['p.csv', 'Bo', undefined, 'Boh']]);
  assert.deepEqual([merged.names, merged.pronunciations], [['Ann', 'Bo'], [undefined, 'Boh']]);
  assert.equal(outputFilename(names[0], 'j1'), 'siobhan-kelly-j1.mp4'); // files by name, as written
});

test('words right after the greeting: trimmed, optional, checked as the worker checks them', () => {
  assert.equal(cleanFollowingText('  I saw your team\u00a0is  hiring! '), 'I saw your team is hiring!');
  assert.equal(cleanFollowingText('Quick question?'), 'Quick question?');
  assert.equal(cleanFollowingText('   '), undefined);
  assert.equal(cleanFollowingText('x'.repeat(200)), 'x'.repeat(200));
  assert.throws(() => cleanFollowingText('x'.repeat(201)), /201 characters; at most 200/);
  assert.throws(() => cleanFollowingText('<break time="3s"/>'), /cannot be spoken \("<", "="/);
  assert.throws(() => cleanFollowingText('Hi {name}'), /cannot be spoken/);
  assert.throws(() => cleanFollowingText('line\nbreak'), /control character/);
});

test('download names match the CLI: <name-slug>-<jobId>.mp4', () => {
  assert.equal(slugify('Zoë Ærøskøbing-Łódź'), 'zoe-aeroskobing-lodz');
  assert.equal(slugify('!!!'), 'prospect');
  assert.equal(outputFilename('Anna Smith', 'abc/123'), 'anna-smith-abc-123.mp4');
});

test('statuses and durations in words', () => {
  assert.equal(statusWords('generating-video'), 'Rendering the video');
  assert.equal(statusWords('cancel-requested'), 'Cancelling…');
  assert.equal(formatDuration(4200), '4.2 s');
  assert.equal(formatDuration(42_000), '42 s');
  assert.equal(formatDuration(185_000), '3 min 05 s');
});

test('each name keeps its data row, counted as `greetings submit` counts it (the job\'s batchIndex)', async () => {
  const { prospectsFromCsv } = await import('../src/export-csv.js');
  const { readCsvFile } = await import('../src/py-csv.js');
  const lists = [
    // A blank line is no row; a row of empty cells, a repeat and a refused name are rows, skipped.
    'name,company\r\nAda Lovelace,A\r\n\r\n,B\r\nada lovelace,C\r\n"Turing, Alan",D\r\n<b>,E\r\nCy Twombly,F\r\n',
    '\uFEFFEmail,Prospect Name,Notes\n"a@b.c","Kim Lee","line\nbreak"\n\n\nx@y.z,Bo Li,\n,,\n',
    'prospectName\rAnn\r\rBen\r',
  ];
  for (const csv of lists) {
    const page = namesFromCsv(csv, 'p.csv');
    const cli = prospectsFromCsv(readCsvFile(csv), 'p.csv');
    assert.deepEqual([page.names, page.rows], [cli.names, cli.rows], JSON.stringify(csv));
  }
  assert.deepEqual(namesFromCsv(lists[0], 'p.csv').rows, [0, 3, 5]);
  // Typed names: the position among the entries, blanks and repeats counted.
  assert.deepEqual(namesFromText('Ann\nBen, , ann\nCy').rows, [0, 1, 4]);
});

test('the preview makes the name with the most to say', async () => {
  const { longestNameIndex } = await import('../src/names.js');
  assert.equal(longestNameIndex(['Al', 'Bartholomew Smith', 'Cy']), 1);
  assert.equal(longestNameIndex(['Ann Lee', 'Bob Ray']), 0); // the first of equals
  // What is said counts: a first name given, or a pronunciation, over the whole name.
  assert.equal(longestNameIndex(['Dr. Maximilian Ng', 'Siobhan Kelly'], ['Max', undefined]), 1);
  assert.equal(longestNameIndex(['Siobhan Kelly', 'Al Li'], [], ['Sheh-VAWN', 'Aaaaaaaaaaaaal']), 1);
});
