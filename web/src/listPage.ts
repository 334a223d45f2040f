// The page at /: every document, newest first, with create, rename and delete. It re-reads the list every few
// seconds and whenever the tab regains focus, so changes made elsewhere show up on their own. In token mode it
// needs an admin token for every document (`/?token=...`, kept for later visits); without one it says so.
import { Api, ApiError, type Doc } from './api';
import { NotForThis, choosePass, refusalOf, showRefusal } from './access';
import { h, replaceChildren } from './dom';
import { fullDate, timeAgo } from './time';
import { keepToken, takeToken } from './tokenStore';

const PAGE_SIZE = 50;
/** The server's largest page; a refresh re-reads what is shown in pages of this size. */
const MAX_PAGE = 500;
const REFRESH_MS = 3000;

export async function showListPage(main: HTMLElement): Promise<void> {
  document.title = 'Documents · tandem';
  replaceChildren(main, h('p', { class: 'loading', role: 'status' }, 'Loading documents…'));
  const given = takeToken('list');
  const token = given?.token ?? null;
  let api = new Api(token);
  try {
    api = (await choosePass('list', token ? [token] : [])).api;
    if (given?.fresh && api.token === given.token) keepToken('list', given.token);
  } catch (err) {
    if (!(err instanceof ApiError && err.unreachable)) {
      showListRefusal(main, err, token);
      return;
    }
    // Unreachable: the list says so and keeps trying, and is refused later if the token does not do. A new
    // link's token cannot be checked now, so it is kept rather than lost.
    if (given?.fresh) keepToken('list', given.token);
  }
  new DocList(main, api).start();
}

/** Why the list cannot be shown. An expired or broken link says so; any other token just does not open the list. */
function showListRefusal(main: HTMLElement, err: unknown, token: string | null): void {
  const refusal = refusalOf(err, token !== null);
  if (refusal === 'expired' || refusal === 'invalid') {
    showRefusal(main, refusal);
  } else if (token && err instanceof NotForThis && err.access.doc !== '*') {
    // A link to one document, opened at the list's address: lead on to that document, with the token.
    const href = `/d/${encodeURIComponent(err.access.doc)}?token=${encodeURIComponent(token)}`;
    showRefusal(main, 'needed', { label: 'Open the document this link is for', href });
  } else if (refusal) {
    showRefusal(main, 'needed');
  } else {
    document.title = 'Documents · tandem';
    replaceChildren(main, h('p', { class: 'problem', role: 'alert' }, describe(err)));
  }
}

class DocList {
  private docs: Doc[] = [];
  private nextCursor: string | null = null;
  private loaded = false;
  private busy = false;
  private stopped = false;
  private timer = 0;
  private readonly rows = new Map<string, DocRow>();
  private readonly list = h('ol', { class: 'doc-list', 'aria-label': 'Documents' });
  private readonly empty = h('p', { class: 'empty', hidden: true }, 'No documents yet. Give the first one a title above.');
  private readonly more = h('button', { class: 'button more', type: 'button', hidden: true }, 'Show more');
  private readonly problem = h('p', { class: 'problem', role: 'alert', hidden: true });
  private readonly titleInput = h('input', {
    id: 'new-title',
    class: 'new-title',
    type: 'text',
    maxlength: 200,
    placeholder: 'Title of a new document',
    autocomplete: 'off',
  });
  private readonly onFocus = () => void this.refresh();
  private readonly onVisible = () => {
    if (document.visibilityState === 'visible') void this.refresh();
  };

  constructor(
    private readonly main: HTMLElement,
    private readonly api: Api,
  ) {}

  start(): void {
    const form = h(
      'form',
      { class: 'new-doc' },
      h('label', { class: 'visually-hidden', for: 'new-title' }, 'Title of a new document'),
      this.titleInput,
      h('button', { class: 'button button-primary', type: 'submit' }, 'New document'),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.create();
    });
    this.more.addEventListener('click', () => void this.loadMore());
    replaceChildren(
      this.main,
      h(
        'section',
        { class: 'list-page' },
        h('h1', {}, 'Documents'),
        form,
        this.problem,
        h('p', { class: 'loading', role: 'status' }, 'Loading documents…'),
        this.list,
        this.empty,
        this.more,
      ),
    );
    void this.refresh();
    // A hidden tab does not poll; it catches up when it is shown again.
    this.timer = window.setInterval(() => {
      if (!document.hidden) void this.refresh();
    }, REFRESH_MS);
    window.addEventListener('focus', this.onFocus);
    document.addEventListener('visibilitychange', this.onVisible);
  }

  /** The token stopped working (it expired, say): the list makes way for a page that says so. */
  private refused(err: unknown): boolean {
    if (this.stopped || !refusalOf(err, this.api.token !== null)) return false;
    this.stopped = true;
    window.clearInterval(this.timer);
    window.removeEventListener('focus', this.onFocus);
    document.removeEventListener('visibilitychange', this.onVisible);
    showListRefusal(this.main, err, this.api.token);
    return true;
  }

  /** Re-reads at least the first page, and as many documents as are already shown. */
  private async refresh(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      const wanted = Math.max(PAGE_SIZE, this.docs.length);
      const docs: Doc[] = [];
      let cursor: string | null = null;
      do {
        const page = await this.api.listDocs(cursor, Math.min(MAX_PAGE, wanted - docs.length));
        docs.push(...page.docs);
        cursor = page.next_cursor;
      } while (cursor && docs.length < wanted);
      this.docs = docs;
      this.nextCursor = cursor;
      this.loaded = true;
      this.setProblem(null);
      this.render();
    } catch (err) {
      if (this.refused(err)) return;
      this.setProblem(err instanceof ApiError && err.unreachable ? 'The server cannot be reached. Retrying…' : describe(err));
    } finally {
      this.busy = false;
    }
  }

  private async loadMore(): Promise<void> {
    if (!this.nextCursor || this.busy) return;
    this.busy = true;
    try {
      const page = await this.api.listDocs(this.nextCursor, PAGE_SIZE);
      const known = new Set(this.docs.map((d) => d.id));
      this.docs.push(...page.docs.filter((d) => !known.has(d.id)));
      this.nextCursor = page.next_cursor;
      this.render();
      this.setProblem(null);
    } catch (err) {
      if (!this.refused(err)) this.setProblem(describe(err));
    } finally {
      this.busy = false;
    }
  }

  private async create(): Promise<void> {
    const title = this.titleInput.value.trim() || 'Untitled';
    try {
      const doc = await this.api.createDoc(title);
      location.assign(`/d/${encodeURIComponent(doc.id)}`);
    } catch (err) {
      if (!this.refused(err)) this.setProblem(describe(err));
    }
  }

  private setProblem(message: string | null): void {
    this.problem.hidden = message === null;
    this.problem.textContent = message ?? '';
  }

  /** Brings the rows in line with `this.docs`, keeping rows (and the focus inside them) that still exist. */
  private render(): void {
    this.main.querySelector('.loading')?.remove();
    const seen = new Set<string>();
    this.docs.forEach((doc, index) => {
      seen.add(doc.id);
      let row = this.rows.get(doc.id);
      if (!row) {
        row = new DocRow(doc, {
          rename: (title) => this.rename(doc.id, title),
          remove: () => this.remove(doc.id),
        });
        this.rows.set(doc.id, row);
      } else {
        row.update(doc);
      }
      const current = this.list.children[index];
      if (current !== row.el) this.list.insertBefore(row.el, current ?? null);
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = !this.loaded || this.docs.length > 0;
    this.more.hidden = this.nextCursor === null;
  }

  private async rename(id: string, title: string): Promise<void> {
    try {
      const doc = await this.api.renameDoc(id, title);
      this.docs = this.docs.map((d) => (d.id === id ? doc : d));
      this.render();
    } catch (err) {
      if (!this.refused(err)) this.setProblem(describe(err));
    }
  }

  private async remove(id: string): Promise<void> {
    try {
      await this.api.deleteDoc(id);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) {
        if (!this.refused(err)) this.setProblem(describe(err));
        return;
      }
    }
    this.docs = this.docs.filter((d) => d.id !== id);
    this.render();
    this.titleInput.focus();
  }
}

interface RowActions {
  rename(title: string): Promise<void>;
  remove(): Promise<void>;
}

/** One document in the list: a link to it, when it changed, and its rename and delete controls. */
class DocRow {
  readonly el = h('li', { class: 'doc-row' });
  private doc: Doc;
  private mode: 'view' | 'rename' | 'confirm' = 'view';
  /** The "edited ... ago" text on show, redrawn when the clock moves it on. */
  private shownAge = '';

  constructor(doc: Doc, private readonly actions: RowActions) {
    this.doc = doc;
    this.el.dataset.id = doc.id;
    this.draw();
  }

  update(doc: Doc): void {
    const changed = doc.title !== this.doc.title || timeAgo(doc.updated_at) !== this.shownAge;
    this.doc = doc;
    // Leave the row alone while someone is typing a new title or confirming a delete in it.
    if (changed && this.mode === 'view') this.draw();
  }

  private draw(): void {
    const doc = this.doc;
    const title = doc.title || 'Untitled';
    this.shownAge = timeAgo(doc.updated_at);
    const main = h(
      'div',
      { class: 'doc-main' },
      h('a', { class: 'doc-title', href: `/d/${encodeURIComponent(doc.id)}` }, title),
      h('time', { class: 'doc-updated', datetime: doc.updated_at, title: fullDate(doc.updated_at) }, `Edited ${this.shownAge}`),
    );
    if (this.mode === 'rename') {
      replaceChildren(this.el, this.renameForm(title));
    } else if (this.mode === 'confirm') {
      const yes = h('button', { class: 'button button-danger', type: 'button' }, 'Delete');
      const no = h('button', { class: 'button', type: 'button' }, 'Cancel');
      yes.addEventListener('click', () => {
        this.mode = 'view';
        void this.actions.remove();
      });
      no.addEventListener('click', () => this.switchTo('view', '.rename'));
      replaceChildren(this.el, h('div', { class: 'doc-confirm', role: 'group', 'aria-label': `Delete ${title}?` }, h('span', {}, `Delete “${title}” for everyone?`), yes, no));
      no.focus();
    } else {
      const rename = h('button', { class: 'button button-quiet rename', type: 'button', 'aria-label': `Rename ${title}` }, 'Rename');
      const remove = h('button', { class: 'button button-quiet delete', type: 'button', 'aria-label': `Delete ${title}` }, 'Delete');
      rename.addEventListener('click', () => this.switchTo('rename', '.rename-input'));
      remove.addEventListener('click', () => this.switchTo('confirm', null));
      replaceChildren(this.el, main, h('div', { class: 'doc-actions' }, rename, remove));
    }
  }

  private switchTo(mode: 'view' | 'rename' | 'confirm', focus: string | null): void {
    this.mode = mode;
    this.draw();
    if (focus) (this.el.querySelector(focus) as HTMLElement | null)?.focus();
  }

  private renameForm(title: string): HTMLFormElement {
    const input = h('input', { class: 'rename-input', type: 'text', maxlength: 200, 'aria-label': 'New title', value: title });
    const form = h(
      'form',
      { class: 'rename-form' },
      input,
      h('button', { class: 'button button-primary', type: 'submit' }, 'Save'),
      h('button', { class: 'button cancel', type: 'button' }, 'Cancel'),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const wanted = input.value.trim() || 'Untitled';
      this.mode = 'view';
      this.draw();
      (this.el.querySelector('.rename') as HTMLElement | null)?.focus();
      if (wanted !== this.doc.title) void this.actions.rename(wanted);
    });
    form.querySelector('.cancel')?.addEventListener('click', () => this.switchTo('view', '.rename'));
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') this.switchTo('view', '.rename');
    });
    queueMicrotask(() => input.select());
    return form;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
