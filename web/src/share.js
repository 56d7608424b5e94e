// The share page, /v/{shareId}: the video, its poster, the rep's name and call to action, for
// anyone with the link, without signing in. Everything comes from the `share` function
// (triggers/shares.py), which answers only for a share that exists and is not revoked; the
// page reports viewed, played and 25/50/75/100 % watched to `share_event`.
import {
  clientId, fetchPatiently, functionsBase, mediaRetryDelay, newMarks, shareIdFrom,
} from './share-view.js';

const $ = (id) => document.getElementById(id);

async function json(url, { optional = false } = {}) {
  const response = await fetchPatiently(fetch, url, { cache: 'no-store' });
  if (optional && response.status === 404) return null;
  return { status: response.status, body: await response.json().catch(() => ({})) };
}

function say(text) {
  $('share-status').textContent = text;
  $('share-status').hidden = false;
  $('player').hidden = true;
}

async function main() {
  const shareId = shareIdFrom(location.pathname);
  if (!shareId) {
    say('No video is shared at this link.');
    return;
  }
  const config = (await json('/__/firebase/init.json')).body;
  const emulators = (await json('/emulators.json', { optional: true }))?.body ?? null;
  const base = functionsBase(config.projectId, emulators);
  const answer = await json(`${base}/share?s=${encodeURIComponent(shareId)}`);
  if (answer.status !== 200) {
    say(answer.body.error || 'This video cannot be shown right now. Try again later.');
    return;
  }
  const share = answer.body;
  const media = (kind) => `${base}/share?s=${encodeURIComponent(shareId)}&media=${kind}`;
  const video = $('video');
  if (share.hasPoster) video.poster = media('poster');
  video.src = media('video');
  $('sender').textContent = share.senderName ? `A video from ${share.senderName}` : 'A video for you';
  document.title = share.senderName ? `A video from ${share.senderName}` : 'A video for you';
  if (share.ctaUrl) {
    const cta = $('cta');
    cta.href = share.ctaUrl;
    cta.textContent = share.ctaText || 'Learn more';
    cta.hidden = false;
  }
  $('share-status').hidden = true;
  $('player').hidden = false;

  const client = clientId(sessionStorage);
  const report = (type, extra = {}) => fetch(`${base}/share_event`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ s: shareId, type, client, ...extra }),
    keepalive: true,
  }).catch(() => {}); // a lost report never disturbs the viewer
  report('viewed');
  let played = false;
  video.addEventListener('play', () => {
    if (!played) report('played');
    played = true;
  });
  const reported = new Set();
  const mark = () => {
    for (const percent of newMarks(reported, video.currentTime, video.duration)) {
      reported.add(percent);
      report('watched', { percent });
    }
  };
  video.addEventListener('timeupdate', mark);
  video.addEventListener('ended', mark);
  // A failed load is tried again (each try asks the function for a fresh link) before the
  // viewer is told; a revoked share fails every try.
  let failures = 0;
  video.addEventListener('error', () => {
    const delay = mediaRetryDelay(++failures);
    if (delay === null) {
      say('This video is no longer shared, or cannot be played here.');
      return;
    }
    setTimeout(() => {
      video.src = media('video');
      video.load();
    }, delay);
  });
}

main().catch(() => say('This video cannot be shown right now. Try again later.'));
