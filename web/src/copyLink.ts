// The copy-link button's work, and the short notes it (and a failed rename) leave beside it.
import { h } from './dom';

/** Copies the page address, falling back to a selected text field where the clipboard API is missing. */
export async function copyLink(note: HTMLElement): Promise<void> {
  const link = location.href;
  let copied = false;
  try {
    await navigator.clipboard.writeText(link);
    copied = true;
  } catch {
    // No clipboard API outside secure contexts (plain http on another host).
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

/** Shows `message` in `note` for a few seconds. */
export function flash(note: HTMLElement, message: string): void {
  note.textContent = message;
  window.clearTimeout(flashTimer);
  flashTimer = window.setTimeout(() => {
    note.textContent = '';
  }, 4000);
}
