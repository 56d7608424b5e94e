// The sales rep's page: sign in, upload one video with a list of names, watch the jobs finish.
// Plain DOM and the modular Firebase SDK; bundled to web/public/app.js by `npm run build:web`.

import {
  createUserWithEmailAndPassword, onAuthStateChanged, signInWithEmailAndPassword, signOut,
} from 'firebase/auth';
import { h, show } from './dom.js';
import {
  clearDraft, draftFromValues, isEmptyDraft, loadDraft, saveDraft,
} from './draft.js';
import { checkFile, formatMegabytes, judgeProbe } from './filecheck.js';
import { requestEditAndRetry } from './edit-retry.js';
import { runFitCheck } from './fit-checks.js';
import { fitProblem, fitReport, fitWaitMs } from './fitcheck-view.js';
import { connect } from './firebase.js';
import {
  LIST_LIMIT, batchIdsFor, createJobs, listBatchJobs, newBatchId, requestAction, watchBatchJobs,
  watchJobs, watchRequest,
} from './jobs.js';
import { JobList } from './jobs-view.js';
import { exportBatch } from './batch-export.js';
import { listOrigin, rememberBatch, sourceOf } from './batch-sources.js';
import { exportDoneText, exportFailedText, shareFields } from './delivery-view.js';
import {
  MAX_NAME_CHARS, cleanFollowingText, longestNameIndex, namesFromCsv, namesFromText, pickNames,
} from './names.js';
import { errorMessage, uploadVideo } from './upload.js';
import { mountTimeline } from './timeline-view.js';
import { probeVideo } from './video-probe.js';
import { WebhookPanel } from './webhooks-panel.js';

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

// ---- errors tied to their fields: `${id}-error` next to the field, named by its
// aria-describedby (and aria-invalid) while it shows, and taken away once fixed ----
function describedBy(input, errorId, on) {
  const ids = (input.getAttribute('aria-describedby') ?? '').split(/\s+/).filter((id) => id && id !== errorId);
  if (on) ids.push(errorId);
  if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
  else input.removeAttribute('aria-describedby');
}

function setFieldError(fieldId, message, errorId = `${fieldId}-error`) {
  const input = $(fieldId);
  showError($(errorId), message);
  describedBy(input, errorId, Boolean(message));
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  // A field in a closed section (the share page's) is shown with its error.
  if (message) input.closest('details')?.setAttribute('open', '');
}

/** An Error about one field of the form (its id), shown next to that field. */
function fieldError(field, message) {
  return Object.assign(new Error(message), { field });
}

// ---- screen reader announcements: status changes, gathered for a moment so a burst is one ----
const pending = [];
let announceTimer = null;
function announce(message) {
  pending.push(message);
  if (announceTimer) return;
  announceTimer = setTimeout(() => {
    const region = $('announcer');
    region.textContent = pending.splice(0).map((m) => (/[.!?…]$/.test(m) ? m : `${m}.`)).join(' ');
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
    // The request, then its answer (the trigger writes it on the request document).
    onAction: async (jobId, action, onAnswer, onError) => {
      const ref = await requestAction(db, user.uid, jobId, action);
      return watchRequest(ref, onAnswer, onError);
    },
    // Edit and retry: one request per job, its changes on it (edit-retry.js), each answer followed.
    onEditRetry: async (jobIds, changes, perJob) => {
      const refs = await requestEditAndRetry(db, user.uid, jobIds, changes, perJob);
      return refs.map((ref, i) => ({ jobId: jobIds[i], watch: (onAnswer, onError) => watchRequest(ref, onAnswer, onError) }));
    },
    onStatus: (name, words) => announce(name ? `${name}: ${words}` : words),
    download: saveFile,
    // "Export this batch as CSV": the list it was sent from, filled in (batch-export.js).
    exportBatch: (batchId) => exportBatchOf(batchId),
    // A batch the newest-jobs window holds only part of is followed whole (jobs-view.js).
    followBatch: (batchId, onSnapshot, onError) => watchBatchJobs(db, user.uid, batchId, onSnapshot, (error) => {
      showError($('jobs-error'), `Some of your jobs could not be loaded: ${error.message}`);
      onError(error);
    }),
    listName: (batchId) => (user && storage ? sourceOf(storage, user.uid, batchId)?.name ?? null : null),
  });
  function exportBatchOf(batchId) {
    const uid = user.uid;
    return exportBatch({ storage, uid, batchId, listJobs: (ids) => listBatchJobs(db, uid, ids) });
  }
  // The Webhooks section: the user's endpoints and their deliveries (webhooks-panel.js).
  const webhooks = new WebhookPanel({ db, functions, announce });

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
    webhooks.signIn(current?.uid ?? null);
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
    restoreDraft();
    if (focusWasIn) $('batch-title').focus();
    unsubscribe = watchJobs(
      db,
      current.uid,
      (snapshot) => {
        jobList.apply(snapshot, { limit: LIST_LIMIT });
        show($('jobs-empty'), jobList.size === 0);
        showError($('jobs-error'), '');
      },
      (error) => showError($('jobs-error'), `Your jobs could not be loaded: ${error.message}`),
    );
  });

  // ---- the video, checked the moment it is chosen, and where its greeting ends ----
  // Only a file that passed both checks (filecheck.js: what it says it is, then what this browser
  // makes of it) becomes `videoFile`: the one the buttons wait for and the upload sends.
  let videoFile = null;
  let previewUrl = null;
  let checking = 0; // which choice is being checked: a later one wins
  const preview = $('preview-video');
  // The waveform and the greeting end's marker under the preview: they follow the field.
  const timeline = mountTimeline({
    video: preview, field: $('greeting-end'), maxEnd: MAX_GREETING_END, minTail: MIN_TAIL_S,
  });

  function updateButtons() {
    const ready = Boolean(videoFile);
    $('submit-batch').disabled = !ready;
    $('preview-batch').disabled = !ready;
    show($('submit-hint'), !ready);
  }

  function dropVideo() {
    videoFile = null;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    timeline.setFile(null);
    preview.removeAttribute('src');
    preview.load();
    show($('preview'), false);
    $('video-info').textContent = '';
  }

  async function chooseVideo(file) {
    const choice = ++checking;
    dropVideo();
    setFieldError('video-file', '', 'video-error');
    $('video-checking').textContent = '';
    updateButtons();
    if (!file) return;
    const refuse = (message) => {
      $('video-file').value = ''; // the same file, fixed, can be chosen again
      $('video-checking').textContent = '';
      setFieldError('video-file', message, 'video-error');
    };
    const first = checkFile(file);
    if (!first.ok) {
      refuse(first.message);
      return;
    }
    $('video-checking').textContent = `Checking ${file.name}…`;
    const url = URL.createObjectURL(file);
    const verdict = judgeProbe(await probeVideo(url));
    if (choice !== checking) {
      URL.revokeObjectURL(url); // another file was chosen meanwhile
      return;
    }
    if (!verdict.ok) {
      URL.revokeObjectURL(url);
      refuse(verdict.message);
      return;
    }
    $('video-checking').textContent = verdict.note ?? '';
    videoFile = file;
    previewUrl = url;
    preview.src = url;
    show($('preview'), true);
    timeline.setFile(file); // after showing it: the waveform is drawn at its width
    show($('video-draft-note'), false);
    $('video-info').textContent = `${file.name}, ${formatMegabytes(file.size)}`;
    updateButtons();
    recheck('greeting-end'); // its error may have been about the video's length
  }

  $('video-file').addEventListener('change', () => chooseVideo($('video-file').files[0] ?? null));
  preview.addEventListener('loadedmetadata', () => {
    if (videoFile && Number.isFinite(preview.duration)) {
      $('video-info').textContent = `${videoFile.name}, ${formatMegabytes(videoFile.size)}, ${preview.duration.toFixed(1)} s`;
    }
  });
  $('use-current-time').addEventListener('click', () => {
    // What is wrong is said next to the greeting end (the field this button fills).
    setFieldError('greeting-end', '');
    if (!videoFile) {
      setFieldError('greeting-end', 'Choose your video first, then pause it where the greeting ends.');
      return;
    }
    const t = Math.round(preview.currentTime * 10) / 10;
    if (t <= 0) {
      setFieldError('greeting-end', 'Play the video and pause it where the greeting ends, then press “Use current time”.');
      return;
    }
    if (t > MAX_GREETING_END) {
      setFieldError('greeting-end', `The greeting must end within the first ${MAX_GREETING_END} seconds (the player is at ${t} s).`);
      return;
    }
    $('greeting-end').value = String(t);
    recheck('greeting-end');
    saveDraftNow();
  });

  // ---- names: typed, and from a CSV ----
  let csvNames = null; // {source, text, names, firstNames, pronunciations, rows, skipped}
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
      // Each name's row in the rep's list (its job's batchIndex) and the list, for its export.
      ...listOrigin({ typed, csv: csvNames, merged }),
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

  function showCsv(restored = false) {
    const n = csvNames.names.length;
    $('csv-info').textContent = `${csvNames.source}: ${n} ${n === 1 ? 'name' : 'names'}${restored ? ' (kept from your draft)' : ''}`;
    show($('csv-loaded'), true);
  }

  async function loadCsv(file) {
    showError($('batch-error'), '');
    describedBy($('names-csv'), 'batch-error', false);
    try {
      const text = await file.text();
      const parsed = namesFromCsv(text, file.name);
      // The text too: the batch's export gives the rep this CSV back, filled in.
      csvNames = { source: file.name, text, ...parsed };
      showCsv();
    } catch (error) {
      csvNames = null;
      show($('csv-loaded'), false);
      showError($('batch-error'), error.message);
      describedBy($('names-csv'), 'batch-error', true); // the CSV chooser says what was wrong
    }
    $('names-csv').value = '';
    renderNames();
    recheck('names');
    saveDraftNow();
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
    saveDraftNow();
    $('names-csv').focus();
  });
  // The video's drop zone takes a dropped file as if it were chosen.
  const videoDrop = $('video-drop');
  videoDrop.addEventListener('dragover', (event) => {
    if ([...event.dataTransfer.types].includes('Files')) {
      event.preventDefault();
      videoDrop.classList.add('dragging');
    }
  });
  videoDrop.addEventListener('dragleave', () => videoDrop.classList.remove('dragging'));
  videoDrop.addEventListener('drop', (event) => {
    const file = event.dataTransfer.files[0];
    videoDrop.classList.remove('dragging');
    if (!file) return;
    event.preventDefault();
    $('video-file').value = '';
    chooseVideo(file);
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

  // ---- the draft: kept in localStorage as the rep types (draft.js), per user ----
  const DRAFT_IDS = {
    greetingEnd: 'greeting-end',
    names: 'names',
    greetingText: 'greeting-text',
    followingText: 'following-text',
    senderName: 'sender-name',
    ctaText: 'cta-text',
    ctaUrl: 'cta-url',
    voice: 'voice',
    voiceId: 'voice-id',
  };
  const defaultOf = (el) => (el.tagName === 'SELECT'
    ? ([...el.options].find((o) => o.defaultSelected) ?? el.options[0])?.value ?? ''
    : el.defaultValue);
  function currentDraft() {
    const values = {};
    const defaults = {};
    for (const [field, id] of Object.entries(DRAFT_IDS)) {
      values[field] = $(id).value;
      defaults[field] = defaultOf($(id));
    }
    if (csvNames) values.csv = csvNames;
    return draftFromValues(values, defaults);
  }
  let storage = null;
  try {
    storage = window.localStorage;
  } catch {
    storage = null; // blocked: no drafts
  }
  function saveDraftNow() {
    if (user && storage) saveDraft(storage, user.uid, currentDraft());
  }
  function restoreDraft() {
    const draft = storage && user ? loadDraft(storage, user.uid) : null;
    if (isEmptyDraft(draft)) return;
    for (const [field, id] of Object.entries(DRAFT_IDS)) {
      if (draft[field] === undefined) continue;
      const el = $(id);
      if (el.tagName === 'SELECT' && ![...el.options].some((o) => o.value === draft[field])) continue;
      el.value = draft[field];
    }
    show($('voice-id-field'), $('voice').value === 'elevenlabs');
    if (draft.csv) {
      csvNames = draft.csv;
      showCsv(true);
    }
    renderNames();
    show($('video-draft-note'), !videoFile);
  }
  // Every field of the draft saves as it changes (the file input is not one of them).
  const draftIds = new Set(Object.values(DRAFT_IDS));
  for (const type of ['input', 'change']) {
    $('batch-form').addEventListener(type, (event) => {
      if (draftIds.has(event.target.id)) saveDraftNow();
    });
  }

  function resetBatch({ keepVideo }) {
    namesBox.value = '';
    csvNames = null;
    show($('csv-loaded'), false);
    if (!keepVideo) {
      fitChoice?.(null); // a fit check's question is for a form that is gone
      $('batch-form').reset();
      checking++; // a check under way is for a form that is gone
      dropVideo();
      $('video-checking').textContent = '';
      setFieldError('video-file', '', 'video-error');
      show($('video-draft-note'), false);
      show($('voice-id-field'), false);
      show($('batch-done'), false);
      showBatchExport(null);
      updateButtons();
    }
    for (const id of FIELD_IDS) setFieldError(id, '');
    showError($('batch-error'), '');
    describedBy($('names-csv'), 'batch-error', false);
    renderNames();
  }

  // Each field's check: its value, or throws fieldError(id, what to fix). readBatch runs them in
  // order; a field showing an error runs its own again as it changes, so the error goes once fixed.
  const checks = {
    names: () => {
      const collected = collectNames();
      if (!collected.names.length) throw fieldError('names', `Add at least one prospect name (1 to ${MAX_NAME_CHARS} characters).`);
      return collected;
    },
    'greeting-end': () => {
      // Left empty, the worker finds the end of the first phrase in the recording.
      const endText = $('greeting-end').value.trim();
      const end = endText === '' ? undefined : Number(endText);
      if (end !== undefined && (!Number.isFinite(end) || end <= 0 || end > MAX_GREETING_END)) {
        throw fieldError('greeting-end', `The greeting end must be more than 0 and at most ${MAX_GREETING_END} seconds, or empty to find it from the recording.`);
      }
      if (end !== undefined && videoFile && Number.isFinite(preview.duration) && end > preview.duration - MIN_TAIL_S) {
        throw fieldError('greeting-end', `The video is ${preview.duration.toFixed(1)} s long: the greeting must end at least ${MIN_TAIL_S} s before that.`);
      }
      return end;
    },
    'voice-id': () => {
      let voiceId = $('voice').value;
      if (voiceId === 'elevenlabs') {
        voiceId = $('voice-id').value.trim();
        if (!voiceId) throw fieldError('voice-id', 'Enter the ElevenLabs voice id, or pick another voice.');
      }
      if (!/^([A-Za-z0-9]{20}|(espeak|piper):[A-Za-z0-9][A-Za-z0-9_+.-]{0,62}|clone)$/.test(voiceId)) {
        throw fieldError($('voice').value === 'elevenlabs' ? 'voice-id' : 'voice', 'The voice id is not one: an ElevenLabs voice id is 20 letters and digits.');
      }
      return voiceId;
    },
    'greeting-text': () => {
      const template = $('greeting-text').value.trim();
      if (template.length > MAX_TEMPLATE_CHARS) throw fieldError('greeting-text', `The greeting text is longer than ${MAX_TEMPLATE_CHARS} characters.`);
      if (template && !PLACEHOLDERS.some((p) => template.includes(p))) throw fieldError('greeting-text', 'The greeting text needs {firstName} (or {lastName}, {name}) where the prospect\'s name goes, e.g. “Hey {firstName},”.');
      return template;
    },
    'following-text': () => {
      // Optional: the words the rep says right after the greeting, which the new greeting leads into.
      try {
        return cleanFollowingText($('following-text').value);
      } catch (error) {
        throw fieldError('following-text', error.message);
      }
    },
    // Optional: the share page's "A video from …" line and its button (delivery-view.js).
    share: () => shareFields({
      senderName: $('sender-name').value, ctaText: $('cta-text').value, ctaUrl: $('cta-url').value,
    }),
  };
  const FIELD_IDS = ['names', 'greeting-end', 'voice', 'voice-id', 'greeting-text', 'following-text',
    'sender-name', 'cta-text', 'cta-url'];
  // Which check a field's change runs again (the voice menu and its id share one), and the
  // fields each check may report on.
  const CHECK_OF = { voice: 'voice-id', 'sender-name': 'share', 'cta-text': 'share', 'cta-url': 'share' };
  const REPORTS_ON = { 'voice-id': ['voice', 'voice-id'], share: ['sender-name', 'cta-text', 'cta-url'] };

  /** Runs the check of `id` again if its field shows an error: clears it once fixed. */
  function recheck(id) {
    const check = CHECK_OF[id] ?? id;
    if (!checks[check]) return;
    const shown = (REPORTS_ON[check] ?? [check]).filter((f) => !$(`${f}-error`).hidden);
    if (!shown.length) return;
    for (const f of shown) setFieldError(f, '');
    try {
      checks[check]();
    } catch (error) {
      if (error.field) setFieldError(error.field, error.message);
    }
  }
  for (const id of FIELD_IDS) {
    $(id).addEventListener('input', () => recheck(id));
    $(id).addEventListener('change', () => recheck(id));
  }

  /** The batch as the form describes it, or throws an Error saying what to fix. */
  function readBatch() {
    if (!videoFile) throw fieldError('video-file', 'Choose your video.');
    const { names, firstNames, pronunciations, rows, source } = checks.names();
    const end = checks['greeting-end']();
    const voiceId = checks['voice-id']();
    const template = checks['greeting-text']();
    const followingText = checks['following-text']();
    const share = checks.share();
    return {
      ...share, // senderName, ctaText, ctaUrl: on every job, for its share page
      names,
      firstNames,
      pronunciations,
      rows, // each name's row in the rep's list: its job's batchIndex
      source, // the list, remembered for the batch's export
      voiceId,
      greetingEndSecond: end,
      greetingText: template && template !== DEFAULT_TEMPLATE ? template : undefined,
      followingText,
    };
  }

  // ---- the fit check before the jobs: which names fit the greeting (fitcheck-view.js words) ----
  let fitChoice = null; // while the fit check's section asks: resolves with the answer
  for (const [id, choice] of [['fit-use-suggestion', 'suggestion'], ['fit-anyway', 'anyway'], ['fit-back', 'back']]) {
    $(id).addEventListener('click', () => fitChoice?.(choice));
  }

  /** The latest greeting end the page accepts for the chosen video (checks['greeting-end']). */
  function greetingEndLimit() {
    const tail = Number.isFinite(preview.duration) ? preview.duration - MIN_TAIL_S : MAX_GREETING_END;
    return Math.min(MAX_GREETING_END, tail);
  }

  function showFitCheck(view) {
    $('fit-check-title').textContent = view.title;
    $('fit-check-summary').replaceChildren(...view.summary.map((line) => h('p', {}, line)));
    show($('fit-table-wrap'), Boolean(view.rows));
    if (view.rows) {
      $('fit-check-caption').textContent = view.caption;
      $('fit-check-rows').replaceChildren(...view.rows.map((r) => h(
        'tr',
        { dataset: { verdict: r.verdict } },
        h('th', { scope: 'row' }, r.name),
        h('td', {}, r.words),
      )));
    }
    const use = $('fit-use-suggestion');
    use.textContent = view.suggestion?.label ?? '';
    show(use, Boolean(view.suggestion));
    show($('fit-check'), true);
    // Focus goes to what just appeared (and scrolls it into view: the fieldset the rep was in is
    // disabled), and its first line is read out after the heading.
    $('fit-check-title').focus();
    announce(view.summary[0]);
  }

  /**
   * Before any job exists, the batch's names are checked against the video's greeting slot
   * (flows/fit_check.py): resolves to the batch to send, at once when every name fits; else the
   * rep's choice, the batch with the suggested greeting end, as it is, or null (back to edit).
   * The check speaks every name through the speech cache, so the jobs reuse its speech: a batch
   * that fits costs the check's one write and its answer.
   */
  async function checkFitFirst(batch, inputVideo) {
    const uid = user.uid;
    const waitMs = fitWaitMs(batch.names.length);
    $('upload-progress').removeAttribute('value'); // a check has no measure of progress
    $('upload-status').textContent = 'Checking how each name fits…';
    const outcome = await runFitCheck(db, {
      uid,
      inputVideo,
      batch,
      timeoutMs: waitMs,
      onStatus: (status) => {
        $('upload-status').textContent = status === 'running'
          ? 'Checking how each name fits…'
          : 'Checking how each name fits… (waiting for its turn)';
      },
    });
    if (user?.uid !== uid) return null; // signed out meanwhile: the form it was for is gone
    const view = outcome.status === 'done'
      ? fitReport(outcome.check, { count: batch.names.length, maxEnd: greetingEndLimit() })
      : fitProblem(outcome, waitMs);
    if (view.allFit) return batch;
    show($('upload'), false);
    showFitCheck(view);
    const choice = await new Promise((resolve) => { fitChoice = resolve; });
    fitChoice = null;
    show($('fit-check'), false);
    if (choice === 'suggestion') {
      const end = view.suggestion.value;
      $('greeting-end').value = String(end);
      recheck('greeting-end');
      saveDraftNow(); // the new end stays, for this batch and the next
      return { ...batch, greetingEndSecond: end };
    }
    if (choice === 'anyway') return batch;
    if (choice === 'back') {
      $('batch-fields').disabled = false;
      $(view.editField).focus();
    }
    return null;
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
    showBatchExport(null);
    for (const id of FIELD_IDS) setFieldError(id, '');
    describedBy($('names-csv'), 'batch-error', false);
    let batch;
    try {
      batch = readBatch();
    } catch (error) {
      if (error.field === 'video-file') {
        setFieldError('video-file', error.message, 'video-error');
        $('video-file').focus();
      } else if (error.field) {
        setFieldError(error.field, error.message);
        $(error.field).focus(); // its error is read with it (aria-describedby)
      } else {
        showError($('batch-error'), error.message);
      }
      return;
    }
    if (previewOnly) {
      // The longest name: if it fits and sounds right, the others are likelier to.
      const i = longestNameIndex(batch.names, batch.firstNames, batch.pronunciations);
      batch = {
        ...batch,
        names: batch.names.slice(i, i + 1),
        firstNames: batch.firstNames.slice(i, i + 1),
        pronunciations: batch.pronunciations.slice(i, i + 1),
        rows: batch.rows.slice(i, i + 1),
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
      // A preview is one name, heard before the batch: the batch itself is checked.
      const endBefore = batch.greetingEndSecond;
      if (!previewOnly) {
        const checked = await checkFitFirst(batch, uploaded.path);
        if (!checked) {
          // Back to edit (or signed out): nothing was created, the form is the rep's again.
          show($('upload'), false);
          fields.disabled = false;
          return;
        }
        batch = checked;
        show($('upload'), true);
      }
      const endNote = batch.greetingEndSecond !== endBefore ? `, the greeting ending at ${batch.greetingEndSecond} s` : '';
      $('upload-status').textContent = `Creating ${batch.names.length} ${batch.names.length === 1 ? 'job' : 'jobs'}…`;
      const batchId = newBatchId();
      const ids = await createJobs(db, {
        uid: user.uid,
        inputVideo: uploaded.path,
        batchId,
        ...batch,
      });
      // The list it was sent from, for "Export this batch as CSV" (a preview is no batch to export).
      if (!previewOnly) {
        if (user && storage) {
          const batchIds = batchIdsFor(batchId, batch.names.length);
          rememberBatch(storage, user.uid, { batchIds, ...batch.source });
        }
        showBatchExport(batchId);
      }
      show($('upload'), false);
      $('batch-done').textContent = previewOnly
        ? `A preview for ${batch.names[0]} is on the way: play it under “My jobs”, then create the videos (they reuse its greeting).`
        : `${ids.length} ${ids.length === 1 ? 'video is' : 'videos are'} on the way${endNote}${uploaded.reused ? ' (the video was already uploaded)' : ''}. Follow them under “My jobs”.`;
      show($('batch-done'), true);
      if (!previewOnly) {
        resetBatch({ keepVideo: true }); // a preview keeps the names to send
        if (user && storage) clearDraft(storage, user.uid); // sent: no draft to keep
      }
      fields.disabled = false;
      // On to the new jobs: the first of them in the list (rows appear from the local write,
      // before the commit is answered), or the list's heading if none has shown yet.
      if (focusIsLost()) focusNewJobs(ids);
    } catch (error) {
      show($('upload'), false);
      show($('fit-check'), false);
      showError($('batch-error'), errorMessage(error));
      fields.disabled = false;
      if (focusIsLost()) $('submit-batch').focus();
    }
  }

  // ---- "Export this batch as CSV" under the batch just sent (each job's card has one too) ----
  // (The batch is kept on the button: this is called before the code below has run, too.)
  function showBatchExport(batchId) {
    $('batch-export').dataset.batchId = batchId ?? '';
    $('batch-export-note').textContent = '';
    show($('batch-export-box'), Boolean(batchId));
  }
  $('batch-export').addEventListener('click', async () => {
    const button = $('batch-export');
    const batchId = button.dataset.batchId;
    if (!batchId || button.getAttribute('aria-disabled') === 'true') return;
    button.setAttribute('aria-disabled', 'true');
    $('batch-export-note').textContent = 'Making the CSV…';
    try {
      $('batch-export-note').textContent = exportDoneText(await exportBatchOf(batchId));
    } catch (error) {
      $('batch-export-note').textContent = exportFailedText(error);
    } finally {
      button.removeAttribute('aria-disabled');
    }
  });

  function focusNewJobs(ids) {
    const rows = [...$('job-list').children].filter((el) => ids.includes(el.dataset.jobId));
    const target = rows[0] ?? $('jobs-title');
    target.focus({ preventScroll: true });
    const still = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches;
    target.scrollIntoView({ block: 'start', behavior: still ? 'auto' : 'smooth' });
  }

  renderNames();
  updateButtons();
}

main();
