// The sales rep's page: sign in, upload one video with a list of names, watch the jobs finish.
// Plain DOM and the modular Firebase SDK; bundled to web/public/app.js by `npm run build:web`.

import {
  createUserWithEmailAndPassword, onAuthStateChanged, signInWithEmailAndPassword, signOut,
} from 'firebase/auth';
import { show } from './dom.js';
import { connect } from './firebase.js';
import { createJobs, newBatchId, requestAction, watchJobs } from './jobs.js';
import { JobList } from './jobs-view.js';
import {
  MAX_NAME_CHARS, cleanFollowingText, namesFromCsv, namesFromText, pickNames,
} from './names.js';
import { errorMessage, uploadVideo } from './upload.js';

const $ = (id) => document.getElementById(id);
const DEFAULT_TEMPLATE = 'Hey {firstName},';
const PLACEHOLDERS = ['{firstName}', '{lastName}', '{name}'];
const MAX_GREETING_END = 10;
const MIN_TAIL_S = 1; // the video must go on at least this long after the greeting (validate.py)
const MAX_TEMPLATE_CHARS = 200;

const AUTH_ERRORS = {
  'auth/invalid-credential': 'Wrong email or password.',
  'auth/invalid-login-credentials': 'Wrong email or password.',
  'auth/wrong-password': 'Wrong email or password.',
  'auth/user-not-found': 'There is no account with this email. Create one instead?',
  'auth/email-already-in-use': 'An account with this email already exists. Sign in instead.',
  'auth/weak-password': 'The password is too weak: use at least 6 characters.',
  'auth/invalid-email': 'That is not a valid email address.',
  'auth/missing-password': 'Enter a password.',
  'auth/missing-email': 'Enter your email address.',
  'auth/too-many-requests': 'Too many attempts. Wait a moment and try again.',
  'auth/network-request-failed': 'The sign-in service could not be reached. Check your connection.',
  'auth/user-disabled': 'This account has been disabled.',
};

function authMessage(error) {
  return AUTH_ERRORS[error?.code] ?? error?.message ?? String(error);
}

function showError(el, message) {
  el.textContent = message ?? '';
  show(el, Boolean(message));
}

// ---- screen reader announcements: status changes, gathered for a moment so a burst is one ----
const pending = [];
let announceTimer = null;
function announce(message) {
  pending.push(message);
  if (announceTimer) return;
  announceTimer = setTimeout(() => {
    const region = $('announcer');
    region.textContent = pending.splice(0).join('. ');
    announceTimer = null;
  }, 700);
}

async function saveFile(url, filename) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const blob = await response.blob();
  const objectUrl = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = objectUrl;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
}

async function main() {
  let services;
  try {
    services = await connect();
  } catch (error) {
    show($('boot'), false);
    showError($('boot-error'), `The page could not start: ${error.message}`);
    return;
  }
  const { auth, db, functions, local } = services;
  show($('boot'), false);
  show($('local-badge'), local);

  let user = null;
  let unsubscribe = null;
  let moveFocus = false;
  const jobList = new JobList($('job-list'), {
    onAction: (jobId, action) => requestAction(db, user.uid, jobId, action),
    onStatus: (name, words) => announce(`${name}: ${words}`),
    download: saveFile,
  });

  // ---- signing in ----
  $('signin-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const action = event.submitter?.value ?? 'signin';
    const email = $('email').value.trim();
    const password = $('password').value;
    showError($('signin-error'), '');
    if (!email || !password) {
      showError($('signin-error'), 'Enter your email and a password.');
      return;
    }
    const buttons = [$('signin-button'), $('signup-button')];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      moveFocus = true;
      if (action === 'signup') await createUserWithEmailAndPassword(auth, email, password);
      else await signInWithEmailAndPassword(auth, email, password);
      $('password').value = '';
    } catch (error) {
      moveFocus = false;
      showError($('signin-error'), authMessage(error));
      buttons.forEach((b) => { b.disabled = false; });
      event.submitter?.focus(); // disabling it had dropped the keyboard's focus
      return;
    }
    buttons.forEach((b) => { b.disabled = false; });
  });
  $('sign-out').addEventListener('click', () => {
    moveFocus = true;
    signOut(auth);
  });

  onAuthStateChanged(auth, (current) => {
    unsubscribe?.();
    unsubscribe = null;
    jobList.clear();
    user = current;
    show($('signin'), !current);
    show($('app'), Boolean(current));
    show($('account'), Boolean(current));
    $('account-email').textContent = current?.email ?? '';
    showError($('jobs-error'), '');
    show($('jobs-empty'), true);
    // After signing in or out here, focus goes to the form that replaced the one it was in.
    const focusWasIn = moveFocus;
    moveFocus = false;
    if (!current) {
      resetBatch({ keepVideo: false });
      if (focusWasIn) $('email').focus();
      return;
    }
    if (focusWasIn) $('batch-title').focus();
    unsubscribe = watchJobs(
      db,
      current.uid,
      (snapshot) => {
        jobList.apply(snapshot);
        show($('jobs-empty'), jobList.size === 0);
        showError($('jobs-error'), '');
      },
      (error) => showError($('jobs-error'), `Your jobs could not be loaded: ${error.message}`),
    );
  });

  // ---- the video and where its greeting ends ----
  let videoFile = null;
  let previewUrl = null;
  const preview = $('preview-video');
  $('video-file').addEventListener('change', () => {
    videoFile = $('video-file').files[0] ?? null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = videoFile ? URL.createObjectURL(videoFile) : null;
    if (previewUrl) preview.src = previewUrl;
    else preview.removeAttribute('src');
    show($('preview'), Boolean(videoFile));
    $('video-info').textContent = videoFile
      ? `${videoFile.name}, ${(videoFile.size / 1e6).toFixed(1)} MB`
      : '';
  });
  preview.addEventListener('loadedmetadata', () => {
    if (videoFile) {
      $('video-info').textContent = `${videoFile.name}, ${(videoFile.size / 1e6).toFixed(1)} MB, ${preview.duration.toFixed(1)} s`;
    }
  });
  $('use-current-time').addEventListener('click', () => {
    showError($('batch-error'), '');
    if (!videoFile) {
      showError($('batch-error'), 'Choose your video first, then pause it where the greeting ends.');
      return;
    }
    const t = Math.round(preview.currentTime * 10) / 10;
    if (t <= 0) {
      showError($('batch-error'), 'Play the video and pause it where the greeting ends, then press “Use current time”.');
      return;
    }
    if (t > MAX_GREETING_END) {
      showError($('batch-error'), `The greeting must end within the first ${MAX_GREETING_END} seconds (the player is at ${t} s).`);
      return;
    }
    $('greeting-end').value = String(t);
  });

  // ---- names: typed, and from a CSV ----
  let csvNames = null; // {source, names, firstNames, pronunciations, skipped}
  const namesBox = $('names');

  // Typed names never carry a first name or a pronunciation; a CSV's may (its firstName and
  // pronunciation columns), and a name typed and in the CSV too is the typed one (the first one
  // wins, as for any repeat).
  function collectNames() {
    const typed = namesFromText(namesBox.value);
    const entries = typed.names.map((name) => ['the names box', name]);
    if (csvNames) {
      entries.push(...csvNames.names.map((name, i) => [
        csvNames.source, name, csvNames.firstNames[i], csvNames.pronunciations[i],
      ]));
    }
    const merged = pickNames(entries);
    return {
      names: merged.names,
      firstNames: merged.firstNames,
      pronunciations: merged.pronunciations,
      skipped: [
        ...typed.skipped.map((s) => `${s.where}: ${s.reason}`),
        ...(csvNames?.skipped ?? []).map((s) => `${s.where}: ${s.reason}`),
        ...merged.skipped.map((s) => `${s.reason.replace(/ \(first at .*\)$/, '')} (in ${s.where})`),
      ],
    };
  }

  function renderNames() {
    const { names, firstNames, pronunciations, skipped } = collectNames();
    const any = names.length > 0 || skipped.length > 0;
    show($('names-summary'), any);
    const given = firstNames.filter((f) => f !== undefined).length;
    const said = pronunciations.filter((p) => p !== undefined).length;
    const fromCsv = [
      given ? `${given} with a first name` : '',
      said ? `${said} with a pronunciation` : '',
    ].filter(Boolean).join(', ');
    $('names-count').textContent = names.length
      ? `${names.length} ${names.length === 1 ? 'name' : 'names'}${fromCsv ? ` (${fromCsv} from the CSV)` : ''}: ${names.slice(0, 8).join(', ')}${names.length > 8 ? `, and ${names.length - 8} more` : ''}`
      : 'No usable names yet.';
    show($('names-skipped-box'), skipped.length > 0);
    $('names-skipped-title').textContent = `${skipped.length} skipped (blank, duplicate or unusable)`;
    $('names-skipped').replaceChildren(
      ...skipped.map((text) => Object.assign(document.createElement('li'), { textContent: text })),
    );
    $('names-skipped-box').open = skipped.length > 0 && skipped.length <= 5;
    $('submit-batch').textContent = names.length > 1 ? `Create ${names.length} videos` : names.length === 1 ? 'Create 1 video' : 'Create videos';
    return names;
  }

  async function loadCsv(file) {
    showError($('batch-error'), '');
    try {
      const parsed = namesFromCsv(await file.text(), file.name);
      csvNames = { source: file.name, ...parsed };
      $('csv-info').textContent = `${file.name}: ${parsed.names.length} ${parsed.names.length === 1 ? 'name' : 'names'}`;
      show($('csv-loaded'), true);
    } catch (error) {
      csvNames = null;
      show($('csv-loaded'), false);
      showError($('batch-error'), error.message);
    }
    $('names-csv').value = '';
    renderNames();
  }

  namesBox.addEventListener('input', renderNames);
  $('names-csv').addEventListener('change', () => {
    const file = $('names-csv').files[0];
    if (file) loadCsv(file);
  });
  $('csv-remove').addEventListener('click', () => {
    csvNames = null;
    show($('csv-loaded'), false);
    renderNames();
    $('names-csv').focus();
  });
  for (const zone of [$('csv-drop'), namesBox]) {
    zone.addEventListener('dragover', (event) => {
      if ([...event.dataTransfer.types].includes('Files')) {
        event.preventDefault();
        zone.classList.add('dragging');
      }
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (event) => {
      const file = event.dataTransfer.files[0];
      zone.classList.remove('dragging');
      if (!file) return;
      event.preventDefault();
      loadCsv(file);
    });
  }

  // ---- voice ----
  $('voice').addEventListener('change', () => {
    const eleven = $('voice').value === 'elevenlabs';
    show($('voice-id-field'), eleven);
    if (eleven) $('voice-id').focus();
  });

  function resetBatch({ keepVideo }) {
    namesBox.value = '';
    csvNames = null;
    show($('csv-loaded'), false);
    if (!keepVideo) {
      $('batch-form').reset();
      videoFile = null;
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = null;
      preview.removeAttribute('src');
      show($('preview'), false);
      show($('voice-id-field'), false);
      show($('batch-done'), false);
    }
    showError($('batch-error'), '');
    renderNames();
  }

  /** The batch as the form describes it, or throws an Error saying what to fix. */
  function readBatch() {
    if (!videoFile) throw new Error('Choose your video.');
    const { names, firstNames, pronunciations } = collectNames();
    if (!names.length) throw new Error(`Add at least one prospect name (1 to ${MAX_NAME_CHARS} characters).`);
    // Left empty, the worker finds the end of the first phrase in the recording.
    const endText = $('greeting-end').value.trim();
    const end = endText === '' ? undefined : Number(endText);
    if (end !== undefined && (!Number.isFinite(end) || end <= 0 || end > MAX_GREETING_END)) {
      throw new Error(`The greeting end must be more than 0 and at most ${MAX_GREETING_END} seconds, or empty to find it from the recording.`);
    }
    if (end !== undefined && Number.isFinite(preview.duration) && end > preview.duration - MIN_TAIL_S) {
      throw new Error(`The video is ${preview.duration.toFixed(1)} s long: the greeting must end at least ${MIN_TAIL_S} s before that.`);
    }
    let voiceId = $('voice').value;
    if (voiceId === 'elevenlabs') {
      voiceId = $('voice-id').value.trim();
      if (!voiceId) throw new Error('Enter the ElevenLabs voice id, or pick the local voice.');
    }
    if (!/^([A-Za-z0-9]{20}|(espeak|piper):[A-Za-z0-9][A-Za-z0-9_+.-]{0,62}|clone)$/.test(voiceId)) throw new Error('The voice id is not one: an ElevenLabs voice id is 20 letters and digits.');
    const template = $('greeting-text').value.trim();
    if (template.length > MAX_TEMPLATE_CHARS) throw new Error(`The greeting text is longer than ${MAX_TEMPLATE_CHARS} characters.`);
    if (template && !PLACEHOLDERS.some((p) => template.includes(p))) throw new Error('The greeting text needs {firstName} (or {lastName}, {name}) where the prospect\'s name goes, e.g. “Hey {firstName},”.');
    // Optional: the words the rep says right after the greeting, which the new greeting leads into.
    const followingText = cleanFollowingText($('following-text').value);
    return {
      names,
      firstNames,
      pronunciations,
      voiceId,
      greetingEndSecond: end,
      greetingText: template && template !== DEFAULT_TEMPLATE ? template : undefined,
      followingText,
    };
  }

  // ---- sending a batch ----
  // Disabling the fieldset drops the keyboard's focus to the page; it is given back at the end,
  // unless the user has moved on meanwhile (e.g. to a new row's Cancel button).
  const focusIsLost = () => !document.activeElement || document.activeElement === document.body;
  $('batch-form').addEventListener('submit', (event) => {
    event.preventDefault();
    send({ preview: false });
  });
  // One job for the first name, to hear before sending them all: it shows under "My jobs"
  // marked "Preview", and the batch sent after it reuses its greeting's speech.
  $('preview-batch').addEventListener('click', () => send({ preview: true }));

  async function send({ preview: previewOnly }) {
    showError($('batch-error'), '');
    show($('batch-done'), false);
    let batch;
    try {
      batch = readBatch();
    } catch (error) {
      showError($('batch-error'), error.message);
      return;
    }
    if (previewOnly) {
      batch = {
        ...batch,
        names: batch.names.slice(0, 1),
        firstNames: batch.firstNames.slice(0, 1),
        pronunciations: batch.pronunciations.slice(0, 1),
        preview: true,
      };
    }
    const fields = $('batch-fields');
    fields.disabled = true;
    $('upload-progress').value = 0;
    $('upload-progress').removeAttribute('value'); // indeterminate while hashing
    show($('upload'), true);
    try {
      const uploaded = await uploadVideo(functions, videoFile, {
        onStage: (text) => { $('upload-status').textContent = text; },
        onProgress: (fraction) => {
          $('upload-progress').value = fraction;
          if (fraction < 1) $('upload-status').textContent = `Uploading the video… ${Math.floor(fraction * 100)}%`;
        },
      });
      $('upload-status').textContent = `Creating ${batch.names.length} ${batch.names.length === 1 ? 'job' : 'jobs'}…`;
      const ids = await createJobs(db, {
        uid: user.uid,
        inputVideo: uploaded.path,
        batchId: newBatchId(),
        ...batch,
      });
      show($('upload'), false);
      $('batch-done').textContent = previewOnly
        ? `A preview for ${batch.names[0]} is on the way: play it under “My jobs”, then create the videos (they reuse its greeting).`
        : `${ids.length} ${ids.length === 1 ? 'video is' : 'videos are'} on the way${uploaded.reused ? ' (the video was already uploaded)' : ''}. Follow them under “My jobs”.`;
      show($('batch-done'), true);
      if (!previewOnly) resetBatch({ keepVideo: true }); // a preview keeps the names to send
      fields.disabled = false;
      if (focusIsLost()) $('batch-done').focus();
    } catch (error) {
      show($('upload'), false);
      showError($('batch-error'), errorMessage(error));
      fields.disabled = false;
      if (focusIsLost()) $('submit-batch').focus();
    }
  }

  renderNames();
}

main();
