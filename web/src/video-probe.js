// What this browser makes of a chosen video: it is loaded into a <video> that is never shown,
// and the first of `loadedmetadata`, `error` or a timeout is the answer (filecheck.js judges it).

import { PROBE_TIMEOUT_MS } from './filecheck.js';

/**
 * @param {string} url  an object URL of the file
 * @returns {Promise<{event: 'loadedmetadata', duration: number, videoWidth: number,
 *   videoHeight: number} | {event: 'error', code?: number} | {event: 'timeout'}>}
 */
export function probeVideo(url, timeoutMs = PROBE_TIMEOUT_MS) {
  return new Promise((resolve) => {
    const video = document.createElement('video');
    video.hidden = true;
    video.muted = true;
    video.preload = 'metadata';
    let timer = null;
    let done = false;
    const finish = (answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      video.removeEventListener('loadedmetadata', onMetadata);
      video.removeEventListener('error', onError);
      // Let go of the file: the preview player loads it on its own.
      video.removeAttribute('src');
      video.load();
      resolve(answer);
    };
    const onMetadata = () => finish({
      event: 'loadedmetadata',
      duration: video.duration,
      videoWidth: video.videoWidth,
      videoHeight: video.videoHeight,
    });
    const onError = () => finish({ event: 'error', code: video.error?.code });
    video.addEventListener('loadedmetadata', onMetadata);
    video.addEventListener('error', onError);
    timer = setTimeout(() => finish({ event: 'timeout' }), timeoutMs);
    video.src = url;
    video.load();
  });
}
