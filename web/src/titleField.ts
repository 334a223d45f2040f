// The document title on the editor page: an editable heading that renames the document on Enter or when the
// field is left, and shows renames made elsewhere. For a viewer (read token) it only shows the title.

export class TitleField {
  /** A one-line text area rather than an input, so a long title wraps on a narrow screen instead of being cut. */
  readonly el: HTMLTextAreaElement;
  private saved: string;
  /** Whether the visitor typed since the last save: a field merely visited must not undo a rename made elsewhere. */
  private typed = false;

  constructor(
    initial: string,
    private readonly rename: (title: string) => Promise<string>,
    private readonly onSaved: (title: string) => void,
    private readonly onError: (message: string) => void,
    private readonly readOnly = false,
  ) {
    this.saved = initial;
    this.el = document.createElement('textarea');
    Object.assign(this.el, { id: 'doc-title', className: 'title-input', rows: 1, maxLength: 200, placeholder: 'Untitled', spellcheck: false, readOnly });
    this.el.value = initial;
    this.el.addEventListener('input', () => {
      this.typed = true;
      this.fit();
    });
    this.el.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.el.blur();
      } else if (event.key === 'Escape') {
        this.typed = false;
        this.show(this.saved);
        this.el.blur();
      }
    });
    this.el.addEventListener('blur', () => void this.commit());
    new ResizeObserver(() => this.fit()).observe(this.el);
  }

  /** The title as the server last told it. */
  get title(): string {
    return this.saved;
  }

  /** A title read from the server; left alone on screen while the visitor is editing the field. */
  update(title: string): void {
    if (title === this.saved) return;
    this.saved = title;
    if (document.activeElement !== this.el) this.show(title);
    this.onSaved(title);
  }

  private async commit(): Promise<void> {
    const wanted = this.el.value.trim() || 'Untitled';
    const typed = this.typed;
    this.typed = false;
    if (this.readOnly || !typed || wanted === this.saved) {
      this.show(this.saved);
      return;
    }
    try {
      this.saved = await this.rename(wanted);
      this.onSaved(this.saved);
    } catch (err) {
      this.onError(err instanceof Error ? `Rename failed: ${err.message}` : 'Rename failed');
    }
    this.show(this.saved);
  }

  private show(title: string): void {
    this.el.value = title;
    this.fit();
  }

  private fit(): void {
    this.el.style.height = 'auto';
    this.el.style.height = `${this.el.scrollHeight}px`;
  }
}
