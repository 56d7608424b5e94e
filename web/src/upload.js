// Uploading the user's video: one code path for production and the local stack.
//   1. the file's SHA-256 (its content address: the same file is never uploaded twice)
//   2. the callable `create_upload_url` answers where and how to send it, or that it is there
//   3. the bytes, with XMLHttpRequest (fetch reports no upload progress), exactly as told

import { httpsCallable } from 'firebase/functions';

import { videoContentType } from './filecheck.js';

export const DEFAULT_CONTENT_TYPE = 'video/mp4';

export async function sha256Hex(file) {
  const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** A callable's or the upload's failure, in words a user can act on. */
export function errorMessage(error) {
  if (error && typeof error.code === 'string' && error.code.startsWith('functions/')) {
    return error.message || error.code;
  }
  return error?.message || String(error);
}

/**
 * Uploads `file` (unless its content is already stored) and returns the storage path a job's
 * `inputVideo` names. `onStage(text)` and `onProgress(fraction)` report what is happening.
 */
export async function uploadVideo(functions, file, { onStage = () => {}, onProgress = () => {} } = {}) {
  onStage('Fingerprinting the video…');
  const sha256 = await sha256Hex(file);
  onStage('Asking where to upload…');
  const createUploadUrl = httpsCallable(functions, 'create_upload_url');
  const { data } = await createUploadUrl({
    fileName: file.name,
    // A video type: the file's own, or its extension's (a .mkv often comes without one).
    contentType: videoContentType(file),
    size: file.size,
    sha256,
  });
  if (!data || typeof data.path !== 'string') {
    throw new Error('create_upload_url gave no upload path');
  }
  if (data.exists) {
    onStage('This video was uploaded before: not sending it again.');
    onProgress(1);
    return { path: data.path, reused: true };
  }
  onStage('Uploading the video…');
  await send(file, data, onProgress);
  onProgress(1);
  return { path: data.path, reused: false };
}

function send(file, { uploadUrl, method = 'PUT', headers = {} }, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, uploadUrl);
    for (const [name, value] of Object.entries(headers ?? {})) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve();
      } else {
        const detail = (xhr.responseText || '').trim().slice(0, 300);
        reject(new Error(`The upload was refused: ${xhr.status} ${xhr.statusText}${detail ? ` (${detail})` : ''}`));
      }
    };
    xhr.onerror = () => reject(new Error('The upload failed: the storage server could not be reached (network error or CORS).'));
    xhr.ontimeout = () => reject(new Error('The upload timed out.'));
    xhr.onabort = () => reject(new Error('The upload was aborted.'));
    xhr.send(file);
  });
}
