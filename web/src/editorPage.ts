// The page at /d/{id}: title, connection status, people present, copy-link, and the shared editor.
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { IndexeddbPersistence, clearDocument } from 'y-indexeddb';
import { ApiError, getDoc, renameDoc, type Doc } from './api';
import { ConnectionMonitor } from './connection';
import { h, replaceChildren } from './dom';
import { mountEditor } from './editor';
import { loadIdentity } from './identity';
import { nameButton } from './nameButton';
import { TitleField } from './titleField';
import { copyLink, flash } from './copyLink';
import { renderPresence } from './presence';
import { showMessage } from './message';

/** How often the title is re-read, so a rename made elsewhere shows up (and a deletion is noticed). */
const TITLE_POLL_MS = 4000;

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

export async function showEditorPage(main: HTMLElement, id: string): Promise<void> {
  replaceChildren(main, h('p', { class: 'loading', role: 'status' }, 'Opening document…'));
  let doc: Doc | null = null;
  try {
    doc = await getDoc(id);
  } catch (err) {
    if (!(err instanceof ApiError) || !err.unreachable) {
      await showMissing(main, id, err);
      return;
    }
    // The server is unreachable: open this browser's copy; it syncs once the connection is back.
  }
  openEditor(main, id, doc);
}

async function showMissing(main: HTMLElement, id: string, err: unknown): Promise<void> {
  if (err instanceof ApiError && err.status === 404) {
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

function openEditor(main: HTMLElement, id: string, initial: Doc | null): void {
  const identity = loadIdentity();
  const ydoc = new Y.Doc();
  const text = ydoc.getText('content');
  const local = new IndexeddbPersistence(localCopyName(id), ydoc);
  const provider = new WebsocketProvider(websocketBase(), id, ydoc);
  provider.awareness.setLocalStateField('user', identity);

  // Header: title, status, people, copy link.
  const note = h('span', { class: 'copy-note', role: 'status', 'aria-live': 'polite' });
  const title = new TitleField(
    initial?.title ?? '',
    async (wanted) => (await renameDoc(id, wanted)).title,
    setPageTitle,
    (message) => flash(note, message),
  );
  setPageTitle(title.title);
  const statusBadge = h('span', { class: 'status', 'data-status': 'connecting', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const people = h('ul', { class: 'people', 'aria-label': 'People here' });
  const copyButton = h('button', { class: 'button', type: 'button' }, 'Copy link');
  copyButton.addEventListener('click', () => void copyLink(note));
  const you = nameButton(identity, (changed) => provider.awareness.setLocalStateField('user', changed));
  const editorHost = h('div', { class: 'editor-host' });

  replaceChildren(
    main,
    h(
      'section',
      { class: 'doc-page' },
      h(
        'div',
        { class: 'doc-header' },
        h('div', { class: 'doc-title-row' }, h('label', { class: 'visually-hidden', for: 'doc-title' }, 'Document title'), title.el),
        h('div', { class: 'doc-meta' }, statusBadge, people, h('span', { class: 'doc-actions' }, you, copyButton, note)),
      ),
      editorHost,
    ),
  );

  const view = mountEditor(editorHost, text, provider.awareness);

  // People and status.
  const showPeople = () => renderPresence(people, provider.awareness);
  provider.awareness.on('change', showPeople);
  showPeople();
  const monitor = new ConnectionMonitor(provider, ydoc, [local], (state) => {
    statusBadge.dataset.status = state.status;
    statusBadge.textContent = state.label;
    statusBadge.title = state.detail;
  });

  // Notice renames made elsewhere, and deletion (the server also closes our socket when that happens).
  let checking = false;
  const checkDoc = async () => {
    if (checking) return;
    checking = true;
    try {
      title.update((await getDoc(id)).title);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        teardown();
        await clearDocument(localCopyName(id)).catch(() => undefined);
        showMessage(main, 'Document deleted', 'This document was deleted, so it can no longer be edited.');
      }
      // Unreachable: the status badge already says so.
    } finally {
      checking = false;
    }
  };
  const poll = window.setInterval(() => {
    if (!document.hidden) void checkDoc();
  }, TITLE_POLL_MS);
  const onClose = () => window.setTimeout(() => void checkDoc(), 300);
  provider.on('connection-close', onClose);
  const onFocus = () => void checkDoc();
  window.addEventListener('focus', onFocus);
  document.addEventListener('visibilitychange', onFocus);
  if (!initial) void checkDoc();

  function teardown(): void {
    window.clearInterval(poll);
    window.removeEventListener('focus', onFocus);
    document.removeEventListener('visibilitychange', onFocus);
    provider.off('connection-close', onClose);
    monitor.destroy();
    view.destroy();
    provider.destroy();
    void local.destroy();
    ydoc.destroy();
  }

  // Hooks for the end-to-end tests and for debugging from the console.
  (window as unknown as { tandem: unknown }).tandem = { ydoc, provider, text, view };
  view.focus();
}
