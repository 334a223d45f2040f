// The preview of one version, shown in place of the editor while it is open: the version's text (read-only),
// marked against the document's text now and re-marked as the document changes, with "Restore this version"
// for those who may write and "Delete" for admins. The page never sets the text on a restore: the server
// applies it to the live document, and this page's editor follows through its socket like everyone else's.
import type * as Y from 'yjs';
import type { Api, Version } from './api';
import { diffLegend, showDiff, showText } from './diffView';
import { h, replaceChildren } from './dom';
import { exactDate, timeAgo } from './time';

/** How long after the document last changed the marks are worked out again. */
const REMARK_MS = 250;

export interface PreviewOptions {
  api: Api;
  docId: string;
  version: Version;
  /** The live document's text, to compare with. */
  live: Y.Text;
  canRestore: boolean;
  canDelete: boolean;
  /** "Back to the document". */
  onClose: () => void;
  /** After a restore; `before` is the version kept of the text just before it. */
  onRestored: (before: Version) => void;
  onDeleted: (version: Version) => void;
}

/** A short name for a version: its label, else when it was kept. */
export function versionName(version: Version): string {
  return version.label ?? `Version kept ${timeAgo(version.created_at)}`;
}

export function editorsOf(version: Version): string {
  return version.editors.length > 0 ? version.editors.join(', ') : 'no one';
}

export class VersionPreview {
  readonly el: HTMLElement;
  private readonly body = h('div', {
    class: 'diff-view',
    role: 'textbox',
    'aria-readonly': 'true',
    'aria-multiline': 'true',
    'aria-label': 'Text of this version',
    tabindex: 0,
  });
  private readonly summary = h('span', { class: 'diff-summary' });
  private readonly note = h('p', { class: 'preview-note', role: 'status', 'aria-live': 'polite' });
  private readonly compare = h('input', { type: 'checkbox', checked: true });
  private readonly actions = h('div', { class: 'preview-actions' });
  private then: string | null = null;
  private timer = 0;
  private busy = false;
  private readonly onLiveChange = () => {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.mark(), REMARK_MS);
  };

  constructor(private readonly o: PreviewOptions) {
    const { version } = o;
    this.compare.addEventListener('change', () => this.mark());
    this.showActions();
    this.el = h(
      'section',
      { class: 'version-preview', 'aria-label': 'Version preview', 'data-version': version.id },
      h(
        'div',
        { class: 'preview-bar' },
        h(
          'div',
          { class: 'preview-heading' },
          h('h2', { class: version.label ? 'preview-title' : 'preview-title preview-untitled' }, versionName(version)),
          h(
            'p',
            { class: 'preview-meta' },
            h('time', { datetime: version.created_at, title: exactDate(version.created_at) }, exactDate(version.created_at)),
            ` · Edited by ${editorsOf(version)}`,
            version.reason === 'restore' ? h('span', { class: 'version-tag' }, 'Before restore') : null,
          ),
        ),
        this.actions,
      ),
      h(
        'div',
        { class: 'preview-legend' },
        diffLegend(),
        this.summary,
        h('label', { class: 'preview-compare' }, this.compare, ' Show changes'),
      ),
      this.note,
      this.body,
    );
    replaceChildren(this.body, h('span', { class: 'diff-placeholder' }, 'Loading this version…'));
    o.live.observe(this.onLiveChange);
    void this.load();
  }

  destroy(): void {
    window.clearTimeout(this.timer);
    this.o.live.unobserve(this.onLiveChange);
  }

  private async load(): Promise<void> {
    try {
      this.then = await this.o.api.versionText(this.o.docId, this.o.version.id);
      this.mark();
    } catch (err) {
      replaceChildren(this.body);
      this.note.textContent = `Could not read this version: ${describe(err)}`;
    }
  }

  /** Shows the version's text, marked against the document now unless "Show changes" is off. */
  private mark(): void {
    if (this.then === null) return;
    if (!this.compare.checked) {
      showText(this.body, this.then);
      this.summary.textContent = '';
      return;
    }
    const count = showDiff(this.body, this.then, this.o.live.toString());
    this.summary.textContent = !count
      ? 'Too many changes to mark.'
      : count.added + count.removed === 0
        ? 'Same as the document now.'
        : '';
  }

  private showActions(): void {
    const restore = this.o.canRestore ? h('button', { class: 'button button-primary', type: 'button' }, 'Restore this version') : null;
    restore?.addEventListener('click', () => void this.restore(restore));
    const back = h('button', { class: 'button', type: 'button' }, 'Back to the document');
    back.addEventListener('click', () => this.o.onClose());
    const remove = this.o.canDelete ? h('button', { class: 'button button-quiet preview-delete', type: 'button' }, 'Delete') : null;
    remove?.addEventListener('click', () => this.confirmDelete());
    replaceChildren(this.actions, restore, back, remove);
  }

  private async restore(button: HTMLButtonElement): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    button.disabled = true;
    this.note.textContent = 'Restoring…';
    try {
      const before = await this.o.api.restoreVersion(this.o.docId, this.o.version.id);
      this.o.onRestored(before);
    } catch (err) {
      this.note.textContent = `Could not restore: ${describe(err)}`;
      button.disabled = false;
    } finally {
      this.busy = false;
    }
  }

  private confirmDelete(): void {
    const yes = h('button', { class: 'button button-danger', type: 'button' }, 'Delete version');
    const no = h('button', { class: 'button button-quiet', type: 'button' }, 'Cancel');
    replaceChildren(this.actions, h('span', { class: 'preview-confirm' }, 'Delete this version for everyone?'), yes, no);
    no.addEventListener('click', () => this.showActions());
    yes.addEventListener('click', async () => {
      if (this.busy) return;
      this.busy = true;
      yes.disabled = true;
      try {
        await this.o.api.deleteVersion(this.o.docId, this.o.version.id);
        this.o.onDeleted(this.o.version);
      } catch (err) {
        this.note.textContent = `Could not delete: ${describe(err)}`;
        this.showActions();
      } finally {
        this.busy = false;
      }
    });
    no.focus();
  }
}

export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
