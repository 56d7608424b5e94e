// The fit check before a batch is sent (flows/fit_check.py answers it), without the DOM or
// Firebase: the `fitChecks` documents a batch becomes, and what their answer says, in the words
// the page shows. The CLI says the same in its own table (greetings/commands/fit.py fit_lines).

// What firestore.rules let a client write in a fitChecks document (`createdAt` is added where the
// document is written: a server timestamp is Firebase's, not this module's).
export const FIT_CHECK_FIELDS = [
  'userId', 'inputVideo', 'voiceId', 'prospects', 'greetingEndSecond', 'greetingText',
  'greetingFallback', 'followingText', 'status', 'createdAt',
];
// A prospect in the check's list: what flows/fit_check.py `Prospect` reads.
export const PROSPECT_FIELDS = ['prospectName', 'firstName', 'pronunciation'];
// The rules take at most this many prospects a document: a bigger batch is checked in parts.
export const FIT_CHECK_NAMES = 400;
// How long the page waits for an answer before it says there is none and offers to go on: a
// check speaks every name, so a long list gets longer (400 names: 3 minutes).
const WAIT_MS = 90_000;
const WAIT_MS_PER_NAME = 250;
const WAIT_FREE_NAMES = 40;

const FITTING = new Set(['fits', 'fitted']);

/** How long to wait for the answer about `count` names, in ms. */
export function fitWaitMs(count) {
  return WAIT_MS + WAIT_MS_PER_NAME * Math.max(0, count - WAIT_FREE_NAMES);
}

/**
 * The fitChecks documents (without `createdAt`) for a batch as readBatch() describes it: the
 * fields its jobs would get (jobs.js createJobs), the names as `prospects` in order, at most
 * FIT_CHECK_NAMES a document. Nothing undefined: Firestore refuses it.
 * @param {string} uid
 * @param {string} inputVideo  the uploaded video's storage path
 * @param {{names: string[], firstNames?: (string|undefined)[],
 *          pronunciations?: (string|undefined)[], voiceId: string, greetingEndSecond?: number,
 *          greetingText?: string, followingText?: string}} batch
 */
export function fitCheckDocuments(uid, inputVideo, batch) {
  const { names, voiceId, greetingEndSecond, greetingText, followingText } = batch;
  const firstNames = batch.firstNames ?? [];
  const pronunciations = batch.pronunciations ?? [];
  const prospects = names.map((prospectName, i) => {
    const prospect = { prospectName };
    // As a job's: a first name given (even one the pipeline would call blank) is sent, a missing
    // one is derived by the worker; a pronunciation only when there is one.
    if (typeof firstNames[i] === 'string') prospect.firstName = firstNames[i];
    if (pronunciations[i]) prospect.pronunciation = pronunciations[i];
    return prospect;
  });
  const shared = { userId: uid, inputVideo, voiceId, status: 'pending' };
  // Without an end, the worker finds it in the recording, as it does for each job.
  if (typeof greetingEndSecond === 'number' && Number.isFinite(greetingEndSecond)) {
    shared.greetingEndSecond = greetingEndSecond;
  }
  if (greetingText) shared.greetingText = greetingText;
  if (followingText) shared.followingText = followingText;
  const documents = [];
  for (let start = 0; start < prospects.length; start += FIT_CHECK_NAMES) {
    documents.push({ ...shared, prospects: prospects.slice(start, start + FIT_CHECK_NAMES) });
  }
  return documents;
}

/** A finite number from the document, or null. */
function finite(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

const seconds = (value) => `${value.toFixed(2)} s`;

/**
 * One answer from the answered parts of a check, in the batch's order. Each part suggests the
 * first pause of the recording where its own names fit; the latest of those is where all of
 * them do (a later pause is a longer slot). A part with names too long and no pause for them
 * leaves no suggestion.
 */
export function mergeChecks(checks) {
  const results = checks.flatMap((check) => (Array.isArray(check?.results) ? check.results : []));
  let suggested = null;
  let none = false;
  for (const check of checks) {
    if (!(check?.results ?? []).some((r) => r?.verdict === 'too-long')) continue;
    const end = finite(check.suggestedGreetingEndSecond);
    if (end == null) none = true;
    else suggested = Math.max(suggested ?? end, end);
  }
  const merged = { results };
  const end = finite(checks[0]?.greetingEndSecond);
  if (end != null) merged.greetingEndSecond = end;
  if (!none && suggested != null) merged.suggestedGreetingEndSecond = suggested;
  const maxTempo = finite(checks[0]?.maxTempo);
  if (maxTempo != null) merged.maxTempo = maxTempo;
  return merged;
}

/**
 * What fitting a name took, as the CLI says it (fit.py `_how`): "spoken 1.10x faster, uses
 * 0.20 s of the pause, played 1.05x". A step that shows as 1.00x or 0.00 s is no step.
 */
export function fitHow(result) {
  const steps = [];
  const shown = (value) => Number(value.toFixed(2)); // as it reads
  const speed = finite(result?.providerSpeed);
  if (speed != null && shown(speed) > 1) steps.push(`spoken ${speed.toFixed(2)}x faster`);
  const pause = finite(result?.pauseUsedSecond);
  if (pause != null && shown(pause) > 0) steps.push(`uses ${seconds(pause)} of the pause`);
  const tempo = finite(result?.tempo);
  if (tempo != null && shown(tempo) > 1) steps.push(`played ${tempo.toFixed(2)}x`);
  return steps.join(', ');
}

/** One name's answer in words: "Fits", "Fits (spoken 1.10x faster)", "Too long: …". */
export function fitWords(result) {
  const verdict = result?.verdict;
  if (verdict === 'fits') return 'Fits';
  if (verdict === 'fitted') {
    const how = fitHow(result);
    return how ? `Fits (${how})` : 'Fits';
  }
  if (verdict === 'too-long') {
    const needs = finite(result.needsGreetingEndSecond);
    return needs != null
      ? `Too long: needs the greeting to end at ${seconds(needs)} or later`
      : 'Too long for the greeting';
  }
  const error = result?.error ?? {};
  const why = typeof error.message === 'string' && error.message.trim() ? error.message.trim() : error.code;
  if (verdict === 'invalid') return why ? `Cannot be made: ${why}` : 'Cannot be made';
  return `Not checked (the check answered “${verdict ?? 'nothing'}”)`;
}

const plural = (n, one, many) => (n === 1 ? one : many);
const videos = (n) => `${n} ${plural(n, 'video', 'videos')}`;

/** The suggestion's one-click button: "Use 3.13 s for all and create 40 videos". */
export function suggestionLabel(end, count) {
  return `Use ${seconds(end)} for all and create ${videos(count)}`;
}

/**
 * An answered check as the page shows it.
 * `count`: the names sent (an answer that misses some is not "all fit"); `maxEnd`: the latest
 * greeting end the page accepts for this video (its length less the tail a job needs), so a
 * suggestion the jobs would refuse is not offered.
 * @returns {{allFit: boolean, title: string, caption: string, summary: string[],
 *            rows: {name: string, verdict: string, words: string}[],
 *            suggestion: {value: number, label: string}|null, failing: number,
 *            editField: string}}
 */
export function fitReport(check, { count, maxEnd = Infinity } = {}) {
  const results = Array.isArray(check?.results) ? check.results : [];
  const rows = results.map((r) => ({
    name: String(r?.prospectName ?? ''),
    verdict: FITTING.has(r?.verdict) || r?.verdict === 'too-long' ? r.verdict : 'invalid',
    words: fitWords(r),
  }));
  const total = count ?? rows.length;
  const tooLong = rows.filter((r) => r.verdict === 'too-long').length;
  const invalid = rows.filter((r) => r.verdict === 'invalid').length;
  const failing = tooLong + invalid + Math.max(0, total - rows.length);
  const allFit = rows.length > 0 && failing === 0;
  const end = finite(check?.greetingEndSecond);
  const endWords = end != null ? ` that ends at ${seconds(end)}` : '';
  const names = (n) => plural(n, 'name', 'names');

  const summary = [];
  if (tooLong) {
    summary.push(`${tooLong} of ${total} ${names(total)} ${plural(tooLong, 'does', 'do')} not fit the greeting${endWords}.`);
  }
  if (invalid) {
    summary.push(`${invalid} of ${total} ${names(total)} cannot be made: ${plural(invalid, 'its video', 'their videos')} would fail, for the reason given.`);
  }
  if (rows.length < total) summary.push(`${total - rows.length} of ${total} ${names(total)} got no answer.`);

  let suggestion = null;
  const suggested = finite(check?.suggestedGreetingEndSecond);
  if (tooLong) {
    const who = invalid
      ? plural(tooLong, 'The name that is too long fits', 'The names that are too long fit')
      : plural(total, 'The name fits', 'Every name fits');
    if (suggested != null && suggested > 0 && suggested <= maxEnd) {
      suggestion = { value: suggested, label: suggestionLabel(suggested, total) };
      summary.push(`${who} if the greeting ends at ${seconds(suggested)}, the next pause in your recording (the new greeting replaces the words up to it).`);
    } else if (suggested != null && suggested > 0) {
      summary.push(`${who} if the greeting ends at ${seconds(suggested)}, but that is too close to the end of your video: use a shorter greeting text.`);
    } else {
      summary.push(`No later pause in the first 10 s of your recording leaves room for ${plural(tooLong, 'it', 'them')}: use a shorter greeting text.`);
    }
  }
  if (failing) {
    summary.push(`If you create them anyway, ${failing} of the ${videos(total)} will fail.`);
  }
  return {
    allFit,
    title: tooLong ? 'Not every name fits the greeting' : 'Not every video can be made',
    caption: `How each name fits the greeting${endWords}`,
    summary,
    rows,
    suggestion,
    failing,
    // Where "Back to edit" leaves the rep: the greeting end for names too long, else the names.
    editField: tooLong ? 'greeting-end' : 'names',
  };
}

/**
 * A check that failed, or did not answer in `waitMs`, as the page shows it: what happened, and
 * that the videos can be created anyway.
 * @param {{status: 'failed', error?: {code?: string, message?: string}}|{status: 'timeout'}} outcome
 */
export function fitProblem(outcome, waitMs) {
  const anyway = 'You can create the videos anyway: a name too long for the greeting fails its video, and says why.';
  if (outcome?.status === 'timeout') {
    return {
      allFit: false,
      title: 'The fit check did not answer',
      summary: [`The check of how each name fits the greeting had no answer after ${Math.round(waitMs / 1000)} s.`, anyway],
      rows: null,
      suggestion: null,
      editField: 'greeting-end',
    };
  }
  const error = outcome?.error ?? {};
  const message = typeof error.message === 'string' && error.message.trim() ? error.message.trim() : '';
  const code = typeof error.code === 'string' && error.code ? ` (${error.code})` : '';
  return {
    allFit: false,
    title: 'The fit check could not run',
    summary: [message ? `The fit check failed${code}: ${message}` : `The fit check failed${code}.`, anyway],
    rows: null,
    suggestion: null,
    editField: 'greeting-end',
  };
}
