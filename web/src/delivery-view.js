// What a completed job's card says about delivering its video (jobs-view.js shows it): the share
// page's link and Copy link, the email thumbnail, what its viewers did (the job's `views`,
// `plays`, `maxWatchedPercent` and `lastViewedAt`, written live by the `share_event` function),
// Stop sharing and its answer, and the batch's "Export CSV". Pure: words from the job document,
// forgiving of fields the server did not write.

export const NOT_WATCHED = 'Not watched yet';
export const SHARING_STOPPED = 'Sharing stopped';

/** The words around a Stop sharing request (a `revoke-share` request document). */
export const STOP_WORDS = {
  confirm: 'Stop sharing this video? Its link stops working for everyone who has it, and it cannot be shared again.',
  asking: 'Asking to stop sharing…',
  asked: 'Stop sharing requested.',
  noAnswer: 'No answer to the request to stop sharing yet; the link above is the job\'s own state.',
};

/** A count the server wrote (a non-negative integer), else 0. */
function count(value) {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? Math.floor(value) : 0;
}

/** Milliseconds of a Firestore Timestamp, a Date or a number; null for anything else. */
function millis(value) {
  if (value && typeof value.toMillis === 'function') return value.toMillis();
  if (value instanceof Date) return value.getTime();
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** A link the page may show and open: http(s) only (a `javascript:` URL never becomes an href). */
function webUrl(value) {
  return typeof value === 'string' && /^https?:\/\/[^\s]+$/i.test(value.trim()) ? value.trim() : '';
}

/** "a moment ago", "3 min ago", "2 h ago", "1 day ago", "5 days ago" (a clock ahead: a moment). */
export function agoWords(ms) {
  if (!Number.isFinite(ms) || ms < 60_000) return 'a moment ago';
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.floor(hours / 24);
  return `${days} ${days === 1 ? 'day' : 'days'} ago`;
}

/**
 * What the share page's viewers did, in words: "Not watched yet", or "Viewed 2 times, played 1,
 * watched 50 %, last 3 min ago" ("not played yet" while nobody pressed play; the watched part
 * only once a viewer passed 25 %, the first mark the page reports).
 */
export function viewersWords(job, now = Date.now()) {
  const views = count(job?.views);
  const plays = count(job?.plays);
  const watched = Math.min(100, count(job?.maxWatchedPercent));
  if (!views && !plays && !watched) return NOT_WATCHED;
  const parts = [`Viewed ${views} ${views === 1 ? 'time' : 'times'}`];
  parts.push(plays ? `played ${plays}` : 'not played yet');
  if (watched) parts.push(`watched ${watched} %`);
  const last = millis(job?.lastViewedAt);
  if (last != null) parts.push(`last ${agoWords(now - last)}`);
  return parts.join(', ');
}

/**
 * The email thumbnail to show small: the animated GIF with the first name, or the poster JPEG
 * (first when the rep asks for reduced motion, or when there is no GIF); null without either.
 */
export function thumbnailOf(job, { reducedMotion = false } = {}) {
  const gif = webUrl(job?.thumbnailUrl);
  const poster = webUrl(job?.posterUrl);
  const name = typeof job?.prospectName === 'string' ? job.prospectName : '';
  const useGif = gif && !(reducedMotion && poster);
  if (!useGif && !poster) return null;
  return useGif
    ? { src: gif, kind: 'gif', alt: `Email thumbnail for ${name}: the video's opening with the name` }
    : { src: poster, kind: 'poster', alt: `Email poster for ${name}'s video` };
}

/**
 * Everything the card shows about a completed job's delivery, or null before it completed.
 * `share` is "shared" (a link to show, copy and stop), "revoked" ("Sharing stopped": no link)
 * or "none" (no share page was made); `viewers` is '' where there is no page to have viewers.
 * @returns {null | {share: 'shared'|'revoked'|'none', shareUrl: string, stateText: string,
 *   viewers: string, canStop: boolean, thumbnail: null|{src: string, kind: string, alt: string}}}
 */
export function deliveryOf(job, { now = Date.now(), reducedMotion = false } = {}) {
  if (job?.status !== 'completed') return null;
  const url = webUrl(job.shareUrl);
  const revoked = job.shareRevoked === true;
  const share = revoked ? 'revoked' : url ? 'shared' : 'none';
  return {
    share,
    shareUrl: share === 'shared' ? url : '',
    stateText: revoked ? SHARING_STOPPED : '',
    viewers: share === 'none' ? '' : viewersWords(job, now),
    // firestore.rules take a revoke-share request only for a completed job with a shareId.
    canStop: share === 'shared' && typeof job.shareId === 'string' && job.shareId !== '',
    thumbnail: thumbnailOf(job, { reducedMotion }),
  };
}

/** What Copy link did: put the link in the clipboard, or (no clipboard) select it. */
export function copyWords(result) {
  return result === 'copied'
    ? 'Link copied.'
    : 'The link is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
}

/**
 * The trigger's answer to Stop sharing (triggers/shares.py revoke: outcome "revoked", or
 * "refused" with its message), in the words the card shows.
 */
export function revokeAnswerText(answer) {
  const outcome = answer?.outcome;
  const message = typeof answer?.message === 'string' ? answer.message.trim() : '';
  if (outcome === 'revoked') return `${SHARING_STOPPED}: the link no longer works.`;
  if (outcome === 'refused') return message ? `Sharing was not stopped: ${message}` : 'Sharing was not stopped.';
  if (message) return message;
  return typeof outcome === 'string' && outcome ? `The request was answered: ${outcome}.` : '';
}

/**
 * The words after "Export this batch as CSV": what was downloaded, and from what. `from` is "csv"
 * (the rep's own CSV, every column kept), "names" (typed names: a list of them), "unknown" (a
 * batch this browser did not send or no longer remembers) or "unreadable" (`csvProblem` says why).
 */
export function exportDoneText({ fileName, ready, total, from, csvProblem } = {}) {
  const videos = `${ready} of ${total} ${total === 1 ? 'video' : 'videos'} ready`;
  const why = {
    unknown: ' This browser does not hold the list this batch was sent from, so the file lists the names.',
    unreadable: ` Your CSV could not be read again (${csvProblem}), so the file lists the names.`,
  }[from] ?? '';
  return `Downloaded ${fileName}: ${videos}.${why}`;
}

export function exportFailedText(error) {
  return `The CSV could not be made: ${error?.message ?? String(error)}`;
}

// The share page's sender line and button, as firestore.rules take them on a job.
const CTA_URL = /^https:\/\/[^/?#@ ]+([/?#].*)?$/;

/**
 * The batch form's share-page fields, checked: `{senderName?, ctaText?, ctaUrl?}` with only
 * what was given, or throws an Error with `.field` (the input's id) and the page's words.
 */
export function shareFields({ senderName = '', ctaText = '', ctaUrl = '' }) {
  const fail = (field, message) => Object.assign(new Error(message), { field });
  const sender = senderName.trim();
  const text = ctaText.trim();
  const url = ctaUrl.trim();
  const fields = {};
  if (sender) {
    if (sender.length > 80) throw fail('sender-name', 'Your name on the share page must be at most 80 characters.');
    fields.senderName = sender;
  }
  if (text || url) {
    if (!url) throw fail('cta-url', 'Give the button a link too (https://…), or clear its words.');
    if (!text) throw fail('cta-text', 'Give the button its words too (e.g. “Book 15 minutes”), or clear its link.');
    if (text.length > 40) throw fail('cta-text', 'The button’s words must be at most 40 characters.');
    if (url.length > 2048 || !CTA_URL.test(url)) throw fail('cta-url', 'The button’s link must be a web address starting with https://.');
    fields.ctaText = text;
    fields.ctaUrl = url;
  }
  return fields;
}
