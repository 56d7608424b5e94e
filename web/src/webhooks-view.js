// What the "Webhooks" section says about an endpoint (`webhooks/{id}`) and its deliveries
// (`webhooks/{id}/deliveries/{eventId}`), in words. Pure: no DOM, no Firebase, so node tests it.
// The documents' fields are the worker's (flows/webhooks.py, flows/webhook_queue.py) and the
// callable's (triggers/webhooks.py); anything missing or odd gives less to say, never an error.

export const EVENTS = [
  { value: 'video.ready', label: 'a video is ready' },
  { value: 'video.failed', label: 'a video failed' },
  { value: 'video.viewed', label: 'a prospect opened the share page' },
  { value: 'video.watched', label: 'a prospect watched 25, 50, 75 or 100 %' },
];
const EVENT_VALUES = EVENTS.map((e) => e.value);
// The worker's retry schedule gives up on a 4xx except these (flows/webhooks.py RETRYABLE_4XX).
const RETRYABLE_4XX = new Set([408, 409, 425, 429]);

export const SECRET_NOTICE = 'Copy this secret now: it is not shown again. Verify each request with it (Standard Webhooks).';

/** Milliseconds since the epoch from a Firestore Timestamp, a Date, a number or an ISO string. */
export function millisOf(value) {
  if (value == null) return null;
  if (typeof value.toMillis === 'function') return value.toMillis();
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.getTime() : null;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'string' && value) {
    const ms = Date.parse(value);
    return Number.isFinite(ms) ? ms : null;
  }
  return null;
}

const dayKey = (ms, timeZone) => new Intl.DateTimeFormat('en-CA', {
  timeZone, year: 'numeric', month: '2-digit', day: '2-digit',
}).format(ms);

/**
 * "14:03" (24-hour, the viewer's time zone unless `timeZone` is given); "6 Dec 03:10" when it is
 * not the same day as `now`. '' for no time.
 */
export function formatClock(value, { now = Date.now(), timeZone } = {}) {
  const ms = millisOf(value);
  if (ms == null) return '';
  const time = new Intl.DateTimeFormat('en-GB', {
    timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).format(ms);
  if (dayKey(ms, timeZone) === dayKey(now, timeZone)) return time;
  const day = new Intl.DateTimeFormat('en-GB', { timeZone, day: 'numeric', month: 'short' }).format(ms);
  return `${day} ${time}`;
}

function sentence(text) {
  const t = String(text ?? '').trim();
  if (!t) return '';
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

/** The endpoint's events in its own order ("video.ready, video.failed"); '' for none. */
export function eventsText(events) {
  if (!Array.isArray(events)) return '';
  const known = EVENT_VALUES.filter((e) => events.includes(e));
  const other = events.filter((e) => typeof e === 'string' && !EVENT_VALUES.includes(e));
  return [...known, ...other].join(', ');
}

/**
 * What state an endpoint is in: `state` "active", "failing" (its deliveries have been failing
 * since `failingSince`: a day of that disables it) or "disabled"; `words` say it, with why.
 */
export function endpointState(endpoint, options = {}) {
  if (endpoint?.disabled === true) {
    const since = formatClock(endpoint.disabledAt, options);
    const reason = typeof endpoint.disabledReason === 'string' ? endpoint.disabledReason.trim() : '';
    return {
      state: 'disabled',
      words: `Disabled${since ? ` since ${since}` : ''}: ${reason || 'no reason was recorded.'}`,
      hint: 'Nothing is sent to it any more. Fix the receiver, then press "Enable again": new events are sent to it from then on.',
    };
  }
  const failing = formatClock(endpoint?.failingSince, options);
  if (failing) {
    return {
      state: 'failing',
      words: `Active, but its deliveries have been failing since ${failing}.`,
      hint: 'Failed deliveries are tried again for about a day; an endpoint that fails all day is disabled.',
    };
  }
  return { state: 'active', words: 'Active', hint: '' };
}

/** One endpoint as its row shows it. */
export function endpointView(endpoint, options = {}) {
  const url = typeof endpoint?.url === 'string' ? endpoint.url : '';
  const events = eventsText(endpoint?.events);
  const created = formatClock(endpoint?.createdAt, options);
  return {
    url,
    events: events ? `Events: ${events}` : 'Events: none',
    created: created ? `Added ${created}` : '',
    ...endpointState(endpoint, options),
  };
}

/** "No attempt yet", "1 attempt", "3 attempts". */
export function attemptsText(delivery) {
  const n = Array.isArray(delivery?.attempts) ? delivery.attempts.length : 0;
  if (n === 0) return 'No attempt yet';
  return n === 1 ? '1 attempt' : `${n} attempts`;
}

/** The delivery's latest attempt (the highest `number`; the array's last if none has one). */
export function lastAttempt(delivery) {
  const attempts = Array.isArray(delivery?.attempts) ? delivery.attempts.filter((a) => a && typeof a === 'object') : [];
  if (!attempts.length) return null;
  return attempts.reduce((best, a) => ((Number(a.number) || 0) >= (Number(best.number) || 0) ? a : best));
}

/**
 * One attempt's failure in words the owner can act on ('' for a success or no attempt): the
 * receiver's status code and what it means to the retries, or what went wrong before an answer
 * (flows/webhooks.py describe_error: "timed out: …", "refused: …", "ConnectError: …").
 */
export function attemptErrorWords(attempt) {
  if (!attempt || typeof attempt !== 'object') return '';
  const code = Number.isInteger(attempt.statusCode) ? attempt.statusCode : null;
  if (code != null) {
    if (code >= 200 && code < 300) return '';
    const base = `The receiver answered HTTP ${code}`;
    if (code >= 500) return `${base}, an error on its side.`;
    if (code >= 300 && code < 400) return `${base}, a redirect: redirects are not followed, so give the final URL.`;
    if (RETRYABLE_4XX.has(code)) return `${base}: not now.`;
    if (code >= 400 && code < 500) return `${base}: a refusal, so it is not tried again.`;
    return `${base}.`;
  }
  const error = typeof attempt.error === 'string' ? attempt.error.trim() : '';
  if (!error) return '';
  if (/^timed out\b/i.test(error)) return 'The receiver did not answer in time (it has 5 s).';
  const refused = /^refused:\s*(.*)$/is.exec(error);
  if (refused) return `The URL is not allowed: ${refused[1].trim() || 'refused'}`.replace(/\.?$/, '.');
  if (/Connection refused|Errno 111|ECONNREFUSED/i.test(error)) return 'Nothing answered at that address (connection refused).';
  if (/Name or service not known|nodename nor servname|getaddrinfo|resolves to no address|Temporary failure in name resolution/i.test(error)) {
    return 'The host name does not resolve.';
  }
  const named = /^([A-Z][A-Za-z]*(?:Error|Exception|Timeout)):\s*(.*)$/s.exec(error);
  if (named && /^(Connect|Remote|Local|Read|Write|Network|Protocol)/.test(named[1])) {
    return `Could not reach the receiver: ${named[2].trim() || named[1]}`.replace(/\.?$/, '.');
  }
  return sentence(error);
}

/**
 * A delivery's status: `status` (the document's: pending, retrying, delivered, failed) and
 * `words`: "Delivered at 14:03", "Retrying at 14:08", "Failed", "Waiting to be sent".
 */
export function deliveryStatus(delivery, options = {}) {
  const status = typeof delivery?.status === 'string' ? delivery.status : 'pending';
  switch (status) {
    case 'delivered': {
      const at = formatClock(delivery.deliveredAt ?? delivery.updatedAt, options);
      return { status, words: at ? `Delivered at ${at}` : 'Delivered' };
    }
    case 'retrying': {
      const at = formatClock(delivery.nextAttemptAt, options);
      return { status, words: at ? `Retrying at ${at}` : 'Retrying' };
    }
    case 'failed': {
      const at = formatClock(delivery.updatedAt, options);
      return { status, words: at ? `Failed (gave up at ${at})` : 'Failed' };
    }
    case 'pending':
      return { status, words: 'Waiting to be sent' };
    default:
      return { status, words: sentence(status).replace(/\.$/, '') };
  }
}

/** What went wrong with a delivery, in words ('' when nothing did, or it was delivered). */
export function deliveryErrorWords(delivery) {
  if (!delivery || delivery.status === 'delivered') return '';
  const ended = typeof delivery.endedReason === 'string' ? delivery.endedReason.trim() : '';
  const last = attemptErrorWords(lastAttempt(delivery));
  if (ended && last) return `${last} Then it was given up: ${ended}`.replace(/\.?$/, '.');
  if (ended) return `Not sent: ${ended}`.replace(/\.?$/, '.');
  return last;
}

/** One delivery as its line shows it. */
export function deliveryView(delivery, options = {}) {
  const type = typeof delivery?.eventType === 'string' ? delivery.eventType
    : typeof delivery?.event?.type === 'string' ? delivery.event.type : 'event';
  const name = typeof delivery?.event?.data?.name === 'string' ? delivery.event.data.name : '';
  const { status, words } = deliveryStatus(delivery, options);
  return {
    event: type,
    about: name ? `for ${name}` : '',
    status,
    words,
    attempts: attemptsText(delivery),
    error: deliveryErrorWords(delivery),
  };
}

/** The section's summary line (its <summary>): the endpoints, and any that need the owner's eye. */
export function summaryText(endpoints) {
  const list = Array.isArray(endpoints) ? endpoints : [];
  if (!list.length) return 'Add an endpoint';
  const disabled = list.filter((e) => e?.disabled === true).length;
  const failing = list.filter((e) => e?.disabled !== true && millisOf(e?.failingSince) != null).length;
  const notes = [disabled ? `${disabled} disabled` : '', failing ? `${failing} failing` : ''].filter(Boolean);
  const count = list.length === 1 ? 'Your endpoint' : `Your ${list.length} endpoints`;
  return notes.length ? `${count} (${notes.join(', ')})` : count;
}

/** Newest first, by `createdAt` (endpoints without one last), then by id for a stable order. */
export function sortEndpoints(entries) {
  return [...entries].sort(([idA, a], [idB, b]) => {
    const ta = millisOf(a?.createdAt) ?? -Infinity;
    const tb = millisOf(b?.createdAt) ?? -Infinity;
    if (ta !== tb) return tb - ta;
    return idA < idB ? -1 : idA > idB ? 1 : 0;
  });
}

/**
 * The form's values checked before asking the server: `{url, events}`, or `{field, message}`
 * naming what to fix ("url" or "events"). The server checks the URL itself (https, no internal
 * address) and says why in words; only what it cannot be asked without is checked here.
 */
export function readEndpointForm({ url, events }) {
  const text = typeof url === 'string' ? url.trim() : '';
  if (!text) return { field: 'url', message: 'Enter the endpoint\'s URL (https://…).' };
  const chosen = EVENT_VALUES.filter((e) => Array.isArray(events) && events.includes(e));
  if (!chosen.length) return { field: 'events', message: 'Choose at least one event to send.' };
  return { url: text, events: chosen };
}

/**
 * Why `create_webhook` refused, in a sentence, and where it goes: `field` "url" for what the
 * server said about the URL (an `invalid-argument` answer: "the URL must use https", "… is an
 * internal address …"), "events" for the events, null for anything else (shown by the button).
 */
export function refusalMessage(error) {
  const code = typeof error?.code === 'string' ? error.code : '';
  const message = typeof error?.message === 'string' ? error.message.trim() : String(error ?? '');
  if (code === 'functions/invalid-argument') {
    const field = /^events\b/i.test(message) ? 'events' : 'url';
    return { field, message: sentence(message) };
  }
  if (code === 'functions/unauthenticated') return { field: null, message: 'Sign in again to add an endpoint.' };
  return { field: null, message: `The endpoint could not be added: ${message || code || 'no answer'}`.replace(/\.?$/, '.') };
}
