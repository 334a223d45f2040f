// The version history panel on the editor page: the "History" button opens a side panel listing the versions the
// server kept of the document (GET /api/docs/{id}/versions, newest first, "Show older" for more), with "Name this
// version" for those who may write. Choosing a version previews it in place of the editor (versionPreview.ts).
// The list is read again when the panel opens, after each action, and every few seconds while it is open.
import type * as Y from 'yjs';
import { ApiError, type AccessView, type Api, type Version } from './api';
import { canWrite } from './access';
import { h, replaceChildren } from './dom';
import { exactDate, timeAgo } from './time';
import { VersionPreview, describe, editorsOf } from './versionPreview';

const PAGE_SIZE = 50;
/** The server's largest page; a refresh re-reads what is shown in pages of this size. */
const MAX_PAGE = 500;
const REFRESH_MS = 10_000;
const MAX_LABEL = 200;
/** Where styles.css stacks the panel above the editor instead of beside it. */
const NARROW = '(max-width: 48rem)';

export interface HistoryOptions {
  api: Api;
  docId: string;
  access: AccessView;
  live: Y.Text;
  /** Where the editor is, hidden while a version is previewed. */
  editorHost: HTMLElement;
  /** Where a preview goes, in the editor's place. */
  previewHost: HTMLElement;
  /** The panel opened or closed (the page widens for it). */
  onToggle: (open: boolean) => void;
}

export class HistoryPanel {
  readonly button = h('button', { class: 'button', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'history-panel' }, 'History');
  readonly el: HTMLElement;
  private readonly list = h('ol', { class: 'version-list', 'aria-label': 'Versions, newest first' });
  private readonly status = h('p', { class: 'loading' }, 'Loading versions…');
  private readonly note = h('p', { class: 'history-note', role: 'status', 'aria-live': 'polite' });
  private readonly older = h('button', { class: 'button more', type: 'button', hidden: true }, 'Show older');
  private readonly naming = h('div', { class: 'history-naming' });
  private readonly rows = new Map<string, HTMLLIElement>();
  private versions: Version[] = [];
  private nextCursor: string | null = null;
  private open = false;
  private timer = 0;
  private reading: Promise<void> | null = null;
  private again = false;
  private preview: VersionPreview | null = null;
  private selected: string | null = null;
  private readonly canWrite: boolean;
  private readonly canDelete: boolean;
  private readonly onVisible = () => {
    if (this.open && document.visibilityState === 'visible') void this.refresh();
  };

  constructor(private readonly o: HistoryOptions) {
    this.canWrite = canWrite(o.access);
    this.canDelete = o.access.scope === 'admin';
    const close = h('button', { class: 'button button-quiet history-close', type: 'button', 'aria-label': 'Close history' }, '×');
    close.addEventListener('click', () => {
      this.toggle(false);
      this.button.focus();
    });
    this.el = h(
      'aside',
      { id: 'history-panel', class: 'history-panel', 'aria-label': 'Version history', hidden: true },
      h('div', { class: 'history-head' }, h('h2', {}, 'Version history'), close),
      this.naming,
      this.note,
      this.status,
      this.list,
      this.older,
    );
    this.showNameButton();
    this.button.addEventListener('click', () => this.toggle(!this.open));
    this.older.addEventListener('click', () => void this.loadOlder());
    this.el.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !(event.target instanceof HTMLInputElement)) {
        this.toggle(false);
        this.button.focus();
      }
    });
    document.addEventListener('visibilitychange', this.onVisible);
  }

  toggle(open: boolean): void {
    if (open === this.open) return;
    this.open = open;
    this.el.hidden = !open;
    this.button.setAttribute('aria-expanded', String(open));
    window.clearInterval(this.timer);
    if (open) {
      void this.refresh();
      // A hidden tab does not poll; it catches up when it is shown again.
      this.timer = window.setInterval(() => {
        if (!document.hidden) void this.refresh();
      }, REFRESH_MS);
    } else {
      this.closePreview();
      this.note.textContent = '';
    }
    this.o.onToggle(open);
  }

  destroy(): void {
    window.clearInterval(this.timer);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.closePreview();
  }

  /** Reads the list again (at least the first page, and as many versions as are shown); one read at a time. */
  private refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = this.read().finally(() => {
      this.reading = null;
      if (this.again && this.open) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.reading;
  }

  private async read(): Promise<void> {
    try {
      const wanted = Math.max(PAGE_SIZE, this.versions.length);
      const versions: Version[] = [];
      let cursor: string | null = null;
      do {
        const page = await this.o.api.listVersions(this.o.docId, cursor, Math.min(MAX_PAGE, wanted - versions.length));
        versions.push(...page.versions);
        cursor = page.next_cursor;
      } while (cursor && versions.length < wanted);
      this.versions = versions;
      this.nextCursor = cursor;
      this.status.hidden = true;
      this.render();
    } catch (err) {
      this.showProblem(err);
    }
  }

  private async loadOlder(): Promise<void> {
    if (!this.nextCursor) return;
    this.older.disabled = true;
    try {
      const page = await this.o.api.listVersions(this.o.docId, this.nextCursor, PAGE_SIZE);
      const known = new Set(this.versions.map((v) => v.id));
      this.versions.push(...page.versions.filter((v) => !known.has(v.id)));
      this.nextCursor = page.next_cursor;
      this.render();
    } catch (err) {
      this.showProblem(err);
    } finally {
      this.older.disabled = false;
    }
  }

  private showProblem(err: unknown): void {
    this.status.hidden = false;
    this.status.className = 'problem';
    this.status.textContent =
      err instanceof ApiError && err.unreachable ? 'The server cannot be reached; trying again.' : `Could not read the versions: ${describe(err)}`;
  }

  /** Shows `this.versions`, reusing the rows already shown (so that focus and hover stay put). */
  private render(): void {
    this.status.className = 'loading';
    const now = Date.now();
    const wanted: HTMLLIElement[] = [];
    for (const version of this.versions) {
      let row = this.rows.get(version.id);
      if (!row) {
        row = this.makeRow(version);
        this.rows.set(version.id, row);
      }
      const time = row.querySelector('time');
      if (time) time.textContent = timeAgo(version.created_at, now);
      row.querySelector('.version-item')?.setAttribute('aria-pressed', String(version.id === this.selected));
      wanted.push(row);
    }
    const ids = new Set(this.versions.map((v) => v.id));
    for (const id of [...this.rows.keys()]) if (!ids.has(id)) this.rows.delete(id);
    const shown = [...this.list.children];
    if (shown.length !== wanted.length || shown.some((row, i) => row !== wanted[i])) replaceChildren(this.list, ...wanted);
    this.older.hidden = !this.nextCursor;
    if (this.versions.length === 0) {
      this.status.hidden = false;
      this.status.textContent = this.canWrite
        ? 'No versions yet. One is kept when editing pauses, or name this version to keep it now.'
        : 'No versions yet. One is kept when editing pauses.';
    }
    // The previewed version was deleted elsewhere.
    if (this.selected && !ids.has(this.selected) && !this.nextCursor) this.closePreview();
  }

  private makeRow(version: Version): HTMLLIElement {
    const item = h(
      'button',
      { class: 'version-item', type: 'button', 'aria-pressed': 'false' },
      h(
        'span',
        { class: 'version-when' },
        h('time', { datetime: version.created_at, title: exactDate(version.created_at) }, timeAgo(version.created_at)),
        version.reason === 'restore' ? h('span', { class: 'version-tag' }, 'Before restore') : null,
      ),
      version.label ? h('strong', { class: 'version-label' }, version.label) : null,
      h('span', { class: version.editors.length ? 'version-editors' : 'version-editors version-nobody' }, `Edited by ${editorsOf(version)}`),
    );
    item.addEventListener('click', () => {
      if (this.selected === version.id) this.closePreview();
      else this.showPreview(version);
    });
    return h('li', { class: 'version-row', 'data-id': version.id, 'data-reason': version.reason }, item);
  }

  private showPreview(version: Version): void {
    this.closePreview();
    this.selected = version.id;
    this.preview = new VersionPreview({
      api: this.o.api,
      docId: this.o.docId,
      version,
      live: this.o.live,
      canRestore: this.canWrite,
      canDelete: this.canDelete,
      onClose: () => this.closePreview(),
      onRestored: (before) => {
        this.closePreview();
        this.note.textContent = 'Restored. The earlier text is kept as a version.';
        this.addOnTop(before);
      },
      onDeleted: (gone) => {
        this.closePreview();
        this.versions = this.versions.filter((v) => v.id !== gone.id);
        this.render();
        this.note.textContent = 'Version deleted.';
        void this.refresh();
      },
    });
    replaceChildren(this.o.previewHost, this.preview.el);
    this.o.previewHost.hidden = false;
    this.o.editorHost.hidden = true;
    this.markSelected();
    // On a narrow screen the panel sits above the preview: bring the preview into view.
    if (window.matchMedia(NARROW).matches) this.preview.el.scrollIntoView({ block: 'start' });
  }

  private closePreview(): void {
    if (!this.preview) return;
    this.preview.destroy();
    this.preview = null;
    this.selected = null;
    replaceChildren(this.o.previewHost);
    this.o.previewHost.hidden = true;
    this.o.editorHost.hidden = false;
    this.markSelected();
  }

  private markSelected(): void {
    for (const [id, row] of this.rows) row.querySelector('.version-item')?.setAttribute('aria-pressed', String(id === this.selected));
  }

  /** A version just made here goes on top at once; the refresh that follows brings the rest up to date. */
  private addOnTop(version: Version): void {
    this.versions = [version, ...this.versions.filter((v) => v.id !== version.id)];
    this.status.hidden = true;
    this.render();
    void this.refresh();
  }

  private showNameButton(): void {
    if (!this.canWrite) {
      replaceChildren(this.naming);
      return;
    }
    const button = h('button', { class: 'button button-primary', type: 'button' }, 'Name this version');
    button.addEventListener('click', () => this.showNameForm());
    replaceChildren(this.naming, button);
  }

  /** An inline field for the name; Enter keeps a version of the text now under that name, Escape cancels. */
  private showNameForm(): void {
    const input = h('input', {
      id: 'version-label',
      type: 'text',
      maxlength: MAX_LABEL,
      placeholder: 'e.g. Sent for review',
      autocomplete: 'off',
    });
    const save = h('button', { class: 'button button-primary', type: 'submit' }, 'Keep');
    const cancel = h('button', { class: 'button button-quiet', type: 'button' }, 'Cancel');
    const form = h(
      'form',
      { class: 'name-version' },
      h('label', { for: 'version-label' }, 'Name this version'),
      h('div', { class: 'name-version-row' }, input, save, cancel),
    );
    const done = () => {
      this.showNameButton();
      (this.naming.querySelector('button') as HTMLButtonElement | null)?.focus();
    };
    cancel.addEventListener('click', done);
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        done();
      }
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const label = input.value.trim();
      if (!label) {
        this.note.textContent = 'Give the version a name first.';
        input.focus();
        return;
      }
      save.disabled = true;
      try {
        const made = await this.o.api.makeVersion(this.o.docId, label);
        this.note.textContent = `Kept as “${made.label ?? label}”.`;
        this.addOnTop(made);
        done();
      } catch (err) {
        this.note.textContent = `Could not keep the version: ${describe(err)}`;
        save.disabled = false;
      }
    });
    replaceChildren(this.naming, form);
    input.focus();
  }
}
