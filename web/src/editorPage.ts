// The page at /d/{id}: title, connection status, people present, copy-link or share, version history, and the
// shared editor.
// In token mode the page first learns what its token allows (access.ts): a viewer gets a read-only editor, an
// admin the Share control, and a refused or expired token a page that says so instead of a reconnect spinner.
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { IndexeddbPersistence, clearDocument } from 'y-indexeddb';
import { ApiError, type Doc } from './api';
import { canShare, canWrite, choosePass, guessPass, refusalOf, showRefusal, type Pass } from './access';
import { ConnectionMonitor } from './connection';
import { h, replaceChildren } from './dom';
import { mountEditor } from './editor';
import { loadIdentity } from './identity';
import { nameButton } from './nameButton';
import { TitleField } from './titleField';
import { copyLink, flash } from './copyLink';
import { renderPresence } from './presence';
import { showMessage } from './message';
import { shareControl } from './share';
import { HistoryPanel } from './history';
import { keepToken, keptToken, takeToken, type GivenToken } from './tokenStore';

/** How often the title is re-read, so a rename made elsewhere shows up (and a deletion is noticed). */
const TITLE_POLL_MS = 4000;

/** Close codes the server ends a socket with for good (y-websocket stops reconnecting on 4400-4499). */
const CLOSE_EXPIRED = 4401;
const CLOSE_REVOKED = 4403;
const CLOSE_DELETED = 4404;

/** The IndexedDB database holding this browser's copy of a document. */
function localCopyName(id: string): string {
  return `tandem-doc-${id}`;
}

function websocketBase(): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function setPageTitle(title: string): void {
  document.title = `${title || 'Untitled'} · tandem`;
}

/**
 * The tokens this page may use, in order of preference. A link's own token comes alone: the person opened that
 * link and should see what it gives. Otherwise the one kept for this document and the document list's (an
 * admin's token for every document, so that documents opened from the list work); the best of them wins.
 */
function tokensFor(own: GivenToken | null): string[] {
  if (own?.fresh) return [own.token];
  return [own?.token ?? null, keptToken('list')].filter((token): token is string => !!token);
}

export async function showEditorPage(main: HTMLElement, id: string): Promise<void> {
  replaceChildren(main, h('p', { class: 'loading', role: 'status' }, 'Opening document…'));
  const own = takeToken({ doc: id });
  const tokens = tokensFor(own);
  let pass: Pass | null = null;
  let doc: Doc | null = null;
  try {
    pass = await choosePass({ doc: id }, tokens);
    if (own?.fresh && pass.api.token === own.token) keepToken({ doc: id }, own.token);
    doc = await pass.api.getDoc(id);
  } catch (err) {
    if (!(err instanceof ApiError) || !err.unreachable) {
      await showMissing(main, id, err, tokens.length > 0);
      return;
    }
    // The server is unreachable: open this browser's copy; it syncs once the connection is back. A new link's
    // token cannot be checked now, so it is kept rather than lost.
    if (own?.fresh && !pass) keepToken({ doc: id }, own.token);
  }
  openEditor(main, id, doc, pass ?? guessPass(tokens));
}

async function showMissing(main: HTMLElement, id: string, err: unknown, hadToken: boolean): Promise<void> {
  const refusal = refusalOf(err, hadToken);
  if (refusal) {
    showRefusal(main, refusal);
  } else if (err instanceof ApiError && err.status === 404) {
    // A deleted document should not keep living in this browser.
    await clearDocument(localCopyName(id)).catch(() => undefined);
    showMessage(main, 'Document not found', 'This document does not exist. It may have been deleted, or the link may be mistyped.');
  } else if (err instanceof ApiError && err.status === 400) {
    showMessage(main, 'Not a document link', 'This address does not name a document. Check the link you were sent.');
  } else {
    const detail = err instanceof Error ? err.message : String(err);
    showMessage(main, 'Could not open the document', detail);
  }
}

async function showDeleted(main: HTMLElement, id: string): Promise<void> {
  await clearDocument(localCopyName(id)).catch(() => undefined);
  showMessage(main, 'Document deleted', 'This document was deleted, so it can no longer be edited.');
}

function openEditor(main: HTMLElement, id: string, initial: Doc | null, { api, access }: Pass): void {
  const writable = canWrite(access);
  const identity = loadIdentity(access.name);
  const ydoc = new Y.Doc();
  const text = ydoc.getText('content');
  // The copy kept in this browser is for edits the server has not received yet. A viewer has none, and loading
  // one (from when this browser could edit) would show text the server refuses: a viewer sees the server's.
  const local = writable ? new IndexeddbPersistence(localCopyName(id), ydoc) : null;
  // The provider sends `params` again on every reconnect; an application that refreshes tokens would set
  // `provider.params.token` and call `provider.connect()` (see the README).
  const provider = new WebsocketProvider(websocketBase(), id, ydoc, { params: api.token ? { token: api.token } : {} });
  provider.awareness.setLocalStateField('user', identity);

  // Header: title, status, people, and a way to pass the document on.
  const note = h('span', { class: 'copy-note', role: 'status', 'aria-live': 'polite' });
  const title = new TitleField(
    initial?.title ?? '',
    async (wanted) => (await api.renameDoc(id, wanted)).title,
    setPageTitle,
    (message) => flash(note, message),
    !writable,
  );
  setPageTitle(title.title);
  const statusBadge = h('span', { class: 'status', 'data-status': 'connecting', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const viewOnly = writable ? null : h('span', { class: 'view-only', title: 'You can read along and others see your cursor, but you cannot type here.' }, 'View only');
  const people = h('ul', { class: 'people', 'aria-label': 'People here' });
  const you = nameButton(identity, (changed) => provider.awareness.setLocalStateField('user', changed));
  // Open mode: the address is the link. Token mode: the address carries no token any more, so only an admin's
  // share links can let someone else in.
  let passOn: HTMLButtonElement | null = null;
  let sharePanel: HTMLElement | null = null;
  if (access.mode === 'open') {
    passOn = h('button', { class: 'button', type: 'button' }, 'Copy link');
    passOn.addEventListener('click', () => void copyLink(note));
  } else if (canShare(access)) {
    ({ button: passOn, panel: sharePanel } = shareControl(api, id));
  }
  const editorHost = h('div', { class: 'editor-host' });
  const previewHost = h('div', { class: 'preview-host', hidden: true });
  const page = h('section', { class: 'doc-page' });
  const history = new HistoryPanel({
    api,
    docId: id,
    access,
    live: text,
    editorHost,
    previewHost,
    onToggle: (open) => {
      page.classList.toggle('history-open', open);
      main.classList.toggle('main-wide', open);
    },
  });

  replaceChildren(
    page,
    h(
      'div',
      { class: 'doc-header' },
      h('div', { class: 'doc-title-row' }, h('label', { class: 'visually-hidden', for: 'doc-title' }, 'Document title'), title.el),
      h('div', { class: 'doc-meta' }, statusBadge, viewOnly, people, h('span', { class: 'doc-actions' }, you, history.button, passOn, note)),
      sharePanel,
    ),
    h('div', { class: 'doc-body' }, h('div', { class: 'doc-main-column' }, editorHost, previewHost), history.el),
  );
  replaceChildren(main, page);

  const view = mountEditor(editorHost, text, provider.awareness, { readOnly: !writable });

  // People and status.
  const showPeople = () => renderPresence(people, provider.awareness);
  provider.awareness.on('change', showPeople);
  showPeople();
  const monitor = new ConnectionMonitor(provider, ydoc, local ? [local] : [], (state) => {
    statusBadge.dataset.status = state.status;
    statusBadge.textContent = state.label;
    statusBadge.title = state.detail;
  });

  /** Set once the editor has made way for a full-page message. */
  let left = false;
  const leave = (show: () => unknown) => {
    if (left) return;
    left = true;
    teardown();
    void show();
  };

  // Notice renames made elsewhere, deletion, and a token that stopped working (expired while the socket was
  // down, say: then the upgrade is refused and only REST says why).
  let checking = false;
  const checkDoc = async () => {
    if (checking || left) return;
    checking = true;
    try {
      const doc = await api.getDoc(id);
      if (!left) title.update(doc.title);
    } catch (err) {
      const refusal = refusalOf(err, api.token !== null);
      if (refusal) leave(() => showRefusal(main, refusal));
      else if (err instanceof ApiError && err.status === 404) leave(() => showDeleted(main, id));
      // Unreachable: the status badge already says so.
    } finally {
      checking = false;
    }
  };
  const poll = window.setInterval(() => {
    if (!document.hidden) void checkDoc();
  }, TITLE_POLL_MS);
  let closeTimer = 0;
  const onClose = () => {
    window.clearTimeout(closeTimer);
    closeTimer = window.setTimeout(() => void checkDoc(), 300);
  };
  provider.on('connection-close', onClose);
  // The server closed the socket for good, and y-websocket will not reconnect: say why instead of waiting.
  const onFinalClose = ({ code, reason }: { code: number; reason: string }) => {
    if (code === CLOSE_EXPIRED) leave(() => showRefusal(main, 'expired'));
    else if (code === CLOSE_REVOKED) leave(() => showRefusal(main, 'forbidden'));
    else if (code === CLOSE_DELETED) leave(() => showDeleted(main, id));
    else leave(() => showMessage(main, 'Disconnected', `The server ended the connection${reason ? ` (${reason})` : ''}. Reload the page to try again.`));
  };
  provider.on('closed', onFinalClose);
  const onFocus = () => void checkDoc();
  window.addEventListener('focus', onFocus);
  document.addEventListener('visibilitychange', onFocus);
  if (!initial) void checkDoc();

  function teardown(): void {
    window.clearInterval(poll);
    window.clearTimeout(closeTimer);
    window.removeEventListener('focus', onFocus);
    document.removeEventListener('visibilitychange', onFocus);
    provider.off('connection-close', onClose);
    provider.off('closed', onFinalClose);
    monitor.destroy();
    history.destroy();
    main.classList.remove('main-wide');
    view.destroy();
    provider.destroy();
    void local?.destroy();
    ydoc.destroy();
  }

  // Hooks for the end-to-end tests and for debugging from the console.
  (window as unknown as { tandem: unknown }).tandem = { ydoc, provider, text, view, access };
  view.focus();
}
