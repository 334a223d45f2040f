// Copying links (the page's own in open mode, share links in token mode), and the short notes that copying (and
// a failed rename) leave beside the buttons.
import { h } from './dom';

/** Puts `text` on the clipboard, falling back to a selected text field where the clipboard API is missing. */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard API outside secure contexts (plain http on another host).
    const field = h('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
    field.value = text;
    document.body.appendChild(field);
    field.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
    field.remove();
    return copied;
  }
}

/** Copies the page address (open mode: the address is all anyone needs). */
export async function copyLink(note: HTMLElement): Promise<void> {
  const link = location.href;
  const copied = await copyText(link);
  flash(note, copied ? 'Link copied' : `Copy this link: ${link}`);
}

const flashTimers = new WeakMap<HTMLElement, number>();

/** Shows `message` in `note` for a few seconds. */
export function flash(note: HTMLElement, message: string): void {
  note.textContent = message;
  window.clearTimeout(flashTimers.get(note));
  flashTimers.set(
    note,
    window.setTimeout(() => {
      note.textContent = '';
    }, 4000),
  );
}
