// The share page's decisions, without a browser: where its functions are, which share id the
// address names, and which watch marks a viewer has newly passed.

export const FUNCTIONS_REGION = 'us-central1';
export const WATCH_MARKS = [25, 50, 75, 100];
const SHARE_ID = /^[A-Za-z0-9_-]{22,64}$/;

/** The share id in a /v/{shareId} address, or null. */
export function shareIdFrom(pathname) {
  const match = /^\/v\/([^/]+)\/?$/.exec(pathname);
  return match && SHARE_ID.test(match[1]) ? match[1] : null;
}

/** Where the `share` and `share_event` functions answer: the emulator's when the local stack
 *  serves the page (its /emulators.json), else Cloud Functions' address for the project. */
export function functionsBase(projectId, emulators) {
  const local = emulators?.functions;
  if (local) return `http://${local.host}:${local.port}/${projectId}/${FUNCTIONS_REGION}`;
  return `https://${FUNCTIONS_REGION}-${projectId}.cloudfunctions.net`;
}

/** The watch marks (25/50/75/100 %) reached at `currentTime` and not reported yet. The end
 *  counts as 100 % even when the last frame's time falls a little short of the duration. */
export function newMarks(reported, currentTime, duration) {
  if (!(duration > 0) || !(currentTime >= 0)) return [];
  const percent = currentTime >= duration - 0.25 ? 100 : (100 * currentTime) / duration;
  return WATCH_MARKS.filter((mark) => percent >= mark && !reported.has(mark));
}

/** A client id for rate limits and distinct viewers: random, kept for the tab's session. */
export function clientId(storage, random = () => crypto.getRandomValues(new Uint8Array(16))) {
  const saved = storage?.getItem('greetings-viewer');
  if (saved && /^[A-Za-z0-9_-]{8,64}$/.test(saved)) return saved;
  const id = [...random()].map((b) => b.toString(16).padStart(2, '0')).join('');
  try {
    storage?.setItem('greetings-viewer', id);
  } catch {
    // Storage refused (private mode): a new id per page load is fine.
  }
  return id;
}

// What a busy or cold-starting function answers: worth asking again before a prospect, who
// clicked once, is told to come back later.
export const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);
export const RETRY_DELAYS_MS = [400, 1200, 3000];

/** `fetchFn(url, init)`, asked again after RETRY_DELAYS_MS when the network failed or the
 *  answer is one worth retrying; the last answer (or error) is the caller's. */
export async function fetchPatiently(fetchFn, url, init, {
  delays = RETRY_DELAYS_MS,
  sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
} = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const last = attempt === delays.length;
    try {
      const response = await fetchFn(url, init);
      if (last || !RETRY_STATUSES.has(response.status)) return response;
    } catch (error) {
      if (last) throw error;
    }
    await sleep(delays[attempt]);
  }
}

/** How long to wait before loading the video again after its `failures`-th failed load (a busy
 *  function or a dropped connection on the way to Storage), or null when the viewer should be
 *  told: the <video> element says only that no source worked, never why. */
export function mediaRetryDelay(failures, delays = RETRY_DELAYS_MS) {
  return failures >= 1 && failures <= delays.length ? delays[failures - 1] : null;
}
