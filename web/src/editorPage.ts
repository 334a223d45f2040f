// The page at /d/{id}: title, connection status, people present, copy-link, and the shared editor.
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { IndexeddbPersistence, clearDocument } from 'y-indexeddb';
import { ApiError, getDoc, renameDoc, type Doc } from './api';
import { ConnectionMonitor } from './connection';
import { h, replaceChildren } from './dom';
import { mountEditor } from './editor';
import { loadIdentity, saveName } from './identity';
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
  let identity = loadIdentity();
  const ydoc = new Y.Doc();
  const text = ydoc.getText('content');
  const local = new IndexeddbPersistence(localCopyName(id), ydoc);
  const provider = new WebsocketProvider(websocketBase(), id, ydoc);
  provider.awareness.setLocalStateField('user', identity);

  // Header: title, status, people, copy link.
  // A one-line text area rather than an input, so a long title wraps on a narrow screen instead of being cut.
  const titleInput = h('textarea', {
    id: 'doc-title',
    class: 'title-input',
    rows: 1,
    maxlength: 200,
    placeholder: 'Untitled',
    spellcheck: 'false',
  });
  titleInput.value = initial?.title ?? '';
  const fitTitle = () => {
    titleInput.style.height = 'auto';
    titleInput.style.height = `${titleInput.scrollHeight}px`;
  };
  let savedTitle = initial?.title ?? '';
  setPageTitle(savedTitle);
  const statusBadge = h('span', { class: 'status', 'data-status': 'connecting', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const people = h('ul', { class: 'people', 'aria-label': 'People here' });
  const copyButton = h('button', { class: 'button', type: 'button' }, 'Copy link');
  const copyNote = h('span', { class: 'copy-note', role: 'status', 'aria-live': 'polite' });
  const nameButton = h('button', { class: 'button button-quiet name-button', type: 'button', title: 'Change the name others see' }, `You: ${identity.name}`);
  const editorHost = h('div', { class: 'editor-host' });

  replaceChildren(
    main,
    h(
      'section',
      { class: 'doc-page' },
      h(
        'div',
        { class: 'doc-header' },
        h('div', { class: 'doc-title-row' }, h('label', { class: 'visually-hidden', for: 'doc-title' }, 'Document title'), titleInput),
        h('div', { class: 'doc-meta' }, statusBadge, people, h('span', { class: 'doc-actions' }, nameButton, copyButton, copyNote)),
      ),
      editorHost,
    ),
  );

  const view = mountEditor(editorHost, text, provider.awareness);

  // Title: rename on Enter or when leaving the field; Escape puts the saved title back.
  let titleTyped = false;
  titleInput.addEventListener('input', () => {
    titleTyped = true;
    fitTitle();
  });
  new ResizeObserver(fitTitle).observe(titleInput);
  const commitTitle = async () => {
    const wanted = titleInput.value.trim() || 'Untitled';
    const typed = titleTyped;
    titleTyped = false;
    // Only a title the visitor typed is sent: a field that was merely visited must not undo a rename made elsewhere.
    if (!typed || wanted === savedTitle) {
      titleInput.value = savedTitle;
      fitTitle();
      return;
    }
    try {
      const updated = await renameDoc(id, wanted);
      savedTitle = updated.title;
      titleInput.value = savedTitle;
      fitTitle();
      setPageTitle(savedTitle);
    } catch (err) {
      titleInput.value = savedTitle;
      fitTitle();
      flash(copyNote, err instanceof Error ? `Rename failed: ${err.message}` : 'Rename failed');
    }
  };
  titleInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      titleInput.blur();
    } else if (event.key === 'Escape') {
      titleInput.value = savedTitle;
      titleTyped = false;
      titleInput.blur();
    }
  });
  titleInput.addEventListener('blur', () => void commitTitle());

  // Display name: asked for inline, kept in localStorage, shown to others through awareness.
  nameButton.addEventListener('click', () => {
    const input = h('input', { class: 'name-input', type: 'text', maxlength: 40, 'aria-label': 'Your display name', value: identity.name });
    nameButton.replaceWith(input);
    input.focus();
    input.select();
    let done = false;
    const finish = (save: boolean) => {
      if (done) return;
      done = true;
      if (save) {
        identity = saveName(input.value);
        provider.awareness.setLocalStateField('user', identity);
      }
      nameButton.textContent = `You: ${identity.name}`;
      input.replaceWith(nameButton);
      nameButton.focus();
    };
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') finish(true);
      else if (event.key === 'Escape') finish(false);
    });
    input.addEventListener('blur', () => finish(true));
  });

  copyButton.addEventListener('click', () => void copyLink(copyNote));

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
      const current = await getDoc(id);
      if (current.title !== savedTitle) {
        savedTitle = current.title;
        if (document.activeElement !== titleInput) {
          titleInput.value = savedTitle;
          fitTitle();
        }
        setPageTitle(savedTitle);
      }
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
  const poll = window.setInterval(() => void checkDoc(), TITLE_POLL_MS);
  const onClose = () => window.setTimeout(() => void checkDoc(), 300);
  provider.on('connection-close', onClose);
  const onFocus = () => void checkDoc();
  window.addEventListener('focus', onFocus);
  if (!initial) void checkDoc();

  function teardown(): void {
    window.clearInterval(poll);
    window.removeEventListener('focus', onFocus);
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

async function copyLink(note: HTMLElement): Promise<void> {
  const link = location.href;
  let copied = false;
  try {
    await navigator.clipboard.writeText(link);
    copied = true;
  } catch {
    // No clipboard API outside secure contexts: fall back to a selected text field.
    const field = h('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
    field.value = link;
    document.body.appendChild(field);
    field.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
    field.remove();
  }
  flash(note, copied ? 'Link copied' : `Copy this link: ${link}`);
}

let flashTimer = 0;
function flash(note: HTMLElement, message: string): void {
  note.textContent = message;
  window.clearTimeout(flashTimer);
  flashTimer = window.setTimeout(() => {
    note.textContent = '';
  }, 4000);
}
