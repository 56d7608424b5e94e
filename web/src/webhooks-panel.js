// The "Webhooks" section of the signed-in page (index.html #webhooks): add an endpoint (its
// secret shown once), and the user's endpoints live, each with its latest deliveries. The words
// come from webhooks-view.js, the documents and the callable from webhooks.js.
//
// The endpoints are listened to while signed in (at most 10 small documents: the summary says
// when one is disabled or failing even with the section closed); each endpoint's deliveries only
// once the section has been opened.

import { h, setText, show } from './dom.js';
import {
  createWebhook, deleteWebhook, enableWebhook, watchDeliveries, watchWebhooks,
} from './webhooks.js';
import {
  SECRET_NOTICE, deliveryView, endpointView, readEndpointForm, refusalMessage, sortEndpoints,
  summaryText,
} from './webhooks-view.js';

const $ = (id) => document.getElementById(id);

/** Shows (or with '' takes away) an error next to its field, named by the field while it shows. */
function setFieldError(field, errorEl, message) {
  errorEl.textContent = message;
  show(errorEl, Boolean(message));
  const ids = (field.getAttribute('aria-describedby') ?? '').split(/\s+/).filter((id) => id && id !== errorEl.id);
  if (message) ids.push(errorEl.id);
  if (ids.length) field.setAttribute('aria-describedby', ids.join(' '));
  else field.removeAttribute('aria-describedby');
  if (field.tagName === 'FIELDSET') return; // a group: its error is named, its boxes stay as they are
  if (message) field.setAttribute('aria-invalid', 'true');
  else field.removeAttribute('aria-invalid');
}

export class WebhookPanel {
  /**
   * @param {{db: import('firebase/firestore').Firestore,
   *          functions: import('firebase/functions').Functions,
   *          announce: (message: string) => void}} services
   */
  constructor({ db, functions, announce }) {
    this.db = db;
    this.functions = functions;
    this.announce = announce;
    this.uid = null;
    this.rows = new Map();
    this.stopEndpoints = null;
    this.adding = false;

    this.details = $('webhooks-details');
    this.summary = $('webhooks-summary');
    this.form = $('webhook-form');
    this.url = $('webhook-url');
    this.urlError = $('webhook-url-error');
    this.events = $('webhook-events');
    this.eventsError = $('webhook-events-error');
    this.add = $('webhook-add');
    this.formStatus = $('webhook-status');
    this.formError = $('webhook-error');
    this.secretBox = $('webhook-secret');
    this.secretValue = $('webhook-secret-value');
    this.copyStatus = $('webhook-secret-copied');
    this.list = $('webhook-list');
    this.empty = $('webhooks-empty');
    this.listError = $('webhooks-error');

    $('webhook-secret-notice').textContent = SECRET_NOTICE;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.addEndpoint();
    });
    // What the server said was about the URL as it was: a change makes it old news.
    this.url.addEventListener('input', () => setFieldError(this.url, this.urlError, ''));
    this.events.addEventListener('change', () => {
      if (this.checkedEvents().length) setFieldError(this.events, this.eventsError, '');
    });
    $('webhook-secret-copy').addEventListener('click', () => this.copySecret());
    $('webhook-secret-done').addEventListener('click', () => {
      this.forgetSecret();
      this.url.focus();
    });
    this.details.addEventListener('toggle', () => {
      if (this.details.open) for (const row of this.rows.values()) this.watchRow(row);
    });
  }

  /** The signed-in user changed (null: signed out): everything of the last one goes. */
  signIn(uid) {
    this.stopEndpoints?.();
    this.stopEndpoints = null;
    for (const row of this.rows.values()) this.unwatchRow(row);
    this.rows.clear();
    this.list.replaceChildren();
    this.forgetSecret();
    this.form.reset();
    setFieldError(this.url, this.urlError, '');
    setFieldError(this.events, this.eventsError, '');
    this.showFormError('');
    this.showListError('');
    setText(this.formStatus, '');
    this.details.open = false;
    this.uid = uid;
    this.render();
    if (!uid) return;
    this.stopEndpoints = watchWebhooks(
      this.db,
      uid,
      (snapshot) => {
        this.apply(snapshot);
        this.showListError('');
      },
      (error) => this.showListError(`Your webhooks could not be loaded: ${error.message}`),
    );
  }

  showFormError(message) {
    this.formError.textContent = message;
    show(this.formError, Boolean(message));
  }

  showListError(message) {
    this.listError.textContent = message;
    show(this.listError, Boolean(message));
  }

  checkedEvents() {
    return [...this.events.querySelectorAll('input[type="checkbox"]')].filter((box) => box.checked).map((box) => box.value);
  }

  // ---- adding an endpoint ----
  async addEndpoint() {
    if (this.adding || !this.uid) return;
    const uid = this.uid;
    setFieldError(this.url, this.urlError, '');
    setFieldError(this.events, this.eventsError, '');
    this.showFormError('');
    const read = readEndpointForm({ url: this.url.value, events: this.checkedEvents() });
    if (read.field) {
      this.refuse(read.field, read.message);
      return;
    }
    // aria-disabled, not disabled: a disabled button would drop the keyboard's focus.
    this.adding = true;
    this.add.setAttribute('aria-disabled', 'true');
    setText(this.formStatus, 'Adding the endpoint…');
    try {
      const answer = await createWebhook(this.functions, { url: read.url, events: read.events });
      if (this.uid !== uid) return; // signed out meanwhile: the secret is not for this page now
      this.url.value = '';
      setText(this.formStatus, '');
      this.showSecret(answer.secret);
      this.announce('Endpoint added. Copy its secret now: it is not shown again');
    } catch (error) {
      if (this.uid !== uid) return;
      setText(this.formStatus, '');
      const { field, message } = refusalMessage(error);
      this.refuse(field, message);
    } finally {
      this.adding = false;
      this.add.removeAttribute('aria-disabled');
    }
  }

  /** A refusal, next to what it is about (focused, so it is read with it), or by the button. */
  refuse(field, message) {
    if (field === 'url') {
      setFieldError(this.url, this.urlError, message);
      this.url.focus();
    } else if (field === 'events') {
      setFieldError(this.events, this.eventsError, message);
      this.events.querySelector('input')?.focus();
    } else {
      this.showFormError(message);
    }
  }

  // ---- the secret, shown once: in no document the page can read, and gone once dismissed ----
  showSecret(secret) {
    this.secretValue.value = secret;
    setText(this.copyStatus, '');
    show(this.secretBox, true);
    $('webhook-secret-title').focus();
  }

  forgetSecret() {
    this.secretValue.value = '';
    setText(this.copyStatus, '');
    show(this.secretBox, false);
  }

  async copySecret() {
    const secret = this.secretValue.value;
    if (!secret) return;
    try {
      await navigator.clipboard.writeText(secret);
      setText(this.copyStatus, 'Copied.');
    } catch {
      // No clipboard access (an http page, or refused): selected, it is one keystroke away.
      this.secretValue.focus();
      this.secretValue.select();
      let copied = false;
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
      setText(this.copyStatus, copied ? 'Copied.' : 'Selected: copy it with Ctrl+C (⌘C on a Mac).');
    }
  }

  // ---- the endpoints, live ----
  apply(snapshot) {
    for (const change of snapshot.docChanges()) {
      const id = change.doc.id;
      if (change.type === 'removed') {
        this.removeRow(id);
        continue;
      }
      let row = this.rows.get(id);
      if (!row) {
        row = this.createRow(id);
        this.rows.set(id, row);
        if (this.details.open) this.watchRow(row);
      }
      row.data = change.doc.data({ serverTimestamps: 'estimate' });
      this.updateRow(row);
    }
    this.render();
  }

  /** The list's order (newest first), the empty note and the summary. */
  render() {
    const ordered = sortEndpoints([...this.rows].map(([id, row]) => [id, row.data]));
    ordered.forEach(([id], index) => {
      const { el } = this.rows.get(id);
      if (this.list.children[index] !== el) this.list.insertBefore(el, this.list.children[index] ?? null);
    });
    show(this.empty, Boolean(this.uid) && this.rows.size === 0);
    setText(this.summary, summaryText(ordered.map(([, data]) => data)));
  }

  createRow(id) {
    const row = { id, data: null, stopDeliveries: null, deleting: false };
    row.url = h('h3', { class: 'webhook-url' });
    row.badge = h('span', { class: 'webhook-badge' });
    row.events = h('p', { class: 'hint webhook-events' });
    row.created = h('p', { class: 'hint webhook-created' });
    row.stateWords = h('p', { class: 'webhook-state-words', hidden: true });
    row.stateHint = h('p', { class: 'hint webhook-state-hint', hidden: true });
    row.deliveriesTitle = h('p', { class: 'webhook-deliveries-title', id: `webhook-${id}-deliveries` }, 'Latest deliveries');
    row.deliveriesEmpty = h('p', { class: 'hint webhook-deliveries-empty' }, 'None yet: one is sent when one of its events happens.');
    row.deliveries = h('ol', { class: 'webhook-deliveries', 'aria-labelledby': row.deliveriesTitle.id });
    row.deliveriesError = h('p', { class: 'error webhook-deliveries-error', hidden: true });
    row.enable = h('button', { type: 'button', class: 'secondary webhook-enable', hidden: true }, 'Enable again');
    row.remove = h('button', { type: 'button', class: 'secondary webhook-delete' }, 'Delete');
    row.confirmYes = h('button', { type: 'button', class: 'webhook-delete-confirm' }, 'Yes, delete');
    row.confirmNo = h('button', { type: 'button', class: 'secondary webhook-delete-keep' }, 'Keep it');
    row.confirmText = h('p', { class: 'webhook-confirm-text', id: `webhook-${id}-confirm` }, 'Delete this endpoint? Nothing more is sent to it, and its deliveries are no longer shown.');
    row.confirm = h(
      'div',
      { class: 'webhook-confirm', role: 'group', 'aria-labelledby': row.confirmText.id, hidden: true },
      row.confirmText,
      h('div', { class: 'actions' }, row.confirmYes, row.confirmNo),
    );
    row.note = h('p', { class: 'webhook-note', role: 'status' });
    row.remove.addEventListener('click', () => {
      show(row.confirm, true);
      row.confirmYes.focus();
    });
    row.confirmNo.addEventListener('click', () => {
      show(row.confirm, false);
      row.remove.focus();
    });
    row.confirmYes.addEventListener('click', () => this.deleteRow(row));
    row.enable.addEventListener('click', async () => {
      row.enable.setAttribute('aria-disabled', 'true');
      try {
        await enableWebhook(this.db, row.id);
        setText(row.note, 'Enabled again: new events are sent to it.');
      } catch (error) {
        setText(row.note, `It could not be enabled: ${error.message}`);
      } finally {
        row.enable.removeAttribute('aria-disabled');
      }
    });
    row.el = h(
      'li',
      { class: 'webhook', tabindex: '-1', dataset: { webhookId: id } },
      h('div', { class: 'webhook-head' }, row.url, row.badge),
      row.events,
      row.created,
      row.stateWords,
      row.stateHint,
      row.deliveriesTitle,
      row.deliveriesEmpty,
      row.deliveries,
      row.deliveriesError,
      h('div', { class: 'webhook-actions' }, row.enable, row.remove),
      row.confirm,
      row.note,
    );
    return row;
  }

  updateRow(row) {
    const view = endpointView(row.data);
    row.el.dataset.state = view.state;
    setText(row.url, view.url);
    setText(row.badge, { active: 'Active', failing: 'Failing', disabled: 'Disabled' }[view.state]);
    row.badge.dataset.state = view.state;
    setText(row.events, view.events);
    setText(row.created, view.created);
    show(row.created, Boolean(view.created));
    const trouble = view.state !== 'active';
    setText(row.stateWords, trouble ? view.words : '');
    show(row.stateWords, trouble);
    setText(row.stateHint, view.hint);
    show(row.stateHint, Boolean(view.hint));
    row.remove.setAttribute('aria-label', `Delete the endpoint ${view.url}`);
    show(row.enable, view.state === 'disabled');
    row.enable.setAttribute('aria-label', `Enable the endpoint ${view.url} again`);
  }

  watchRow(row) {
    if (row.stopDeliveries || row.deleting) return;
    row.stopDeliveries = watchDeliveries(
      this.db,
      row.id,
      (snapshot) => {
        const items = snapshot.docs.map((d) => {
          const view = deliveryView(d.data({ serverTimestamps: 'estimate' }));
          return h(
            'li',
            { class: 'webhook-delivery', dataset: { status: view.status, eventId: d.id } },
            h('span', { class: 'delivery-event' }, view.event),
            view.about ? h('span', { class: 'delivery-about' }, ` ${view.about}`) : null,
            h('span', { class: 'delivery-status', dataset: { status: view.status } }, view.words),
            h('span', { class: 'delivery-attempts' }, view.attempts),
            view.error ? h('p', { class: 'delivery-error' }, view.error) : null,
          );
        });
        row.deliveries.replaceChildren(...items);
        show(row.deliveriesEmpty, items.length === 0);
        show(row.deliveriesError, false);
      },
      (error) => {
        row.stopDeliveries = null;
        if (row.deleting) return; // an endpoint being deleted takes its deliveries' access along
        row.deliveriesError.textContent = `Its deliveries could not be loaded: ${error.message}`;
        show(row.deliveriesError, true);
      },
    );
  }

  unwatchRow(row) {
    row.stopDeliveries?.();
    row.stopDeliveries = null;
  }

  async deleteRow(row) {
    if (row.deleting) return;
    row.deleting = true;
    row.confirmYes.setAttribute('aria-disabled', 'true');
    setText(row.note, 'Deleting…');
    this.unwatchRow(row); // before the endpoint goes: the rules read it to allow its deliveries
    try {
      await deleteWebhook(this.db, row.id);
    } catch (error) {
      row.deleting = false;
      row.confirmYes.removeAttribute('aria-disabled');
      setText(row.note, `It could not be deleted: ${error.message}`);
      if (this.details.open) this.watchRow(row);
    }
  }

  removeRow(id) {
    const row = this.rows.get(id);
    if (!row) return;
    this.unwatchRow(row);
    const hadFocus = row.el.contains(document.activeElement);
    row.el.remove();
    this.rows.delete(id);
    if (row.deleting) this.announce('Endpoint deleted');
    if (hadFocus) this.summary.focus();
  }
}
