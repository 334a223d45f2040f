// The Share control, for an admin of the document in token mode: a button that opens a panel with a view link
// and an edit link (made by the server, POST /api/docs/{id}/links), each with a Copy button. Open mode has no
// such links (anyone with the address may edit), so there the editor keeps its plain "Copy link".
import type { Api, ShareLink } from './api';
import { copyText, flash } from './copyLink';
import { h, replaceChildren } from './dom';
import { fullDate } from './time';

/** How long a link lasts: long enough to be opened after a weekend, short enough that a forwarded one ends. */
const LINK_TTL = '7d';

const KINDS = [
  { scope: 'read', label: 'View link', hint: 'Sees the text, the changes and the cursors as they happen; cannot type.', copy: 'Copy view link' },
  { scope: 'write', label: 'Edit link', hint: 'Can type, too.', copy: 'Copy edit link' },
] as const;

export interface ShareControl {
  button: HTMLButtonElement;
  panel: HTMLElement;
}

export function shareControl(api: Api, id: string): ShareControl {
  const button = h('button', { class: 'button', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'share-panel' }, 'Share');
  const note = h('p', { class: 'share-note', role: 'status', 'aria-live': 'polite' });
  const rows = h('div', { class: 'share-rows' });
  const panel = h(
    'section',
    { id: 'share-panel', class: 'share-panel', 'aria-label': 'Share this document', hidden: true },
    h('h2', {}, 'Share this document'),
    rows,
    note,
  );
  /** The links, made once when the panel first opens (again after a failure). */
  let links: Promise<ShareLink[]> | null = null;

  const open = (show: boolean) => {
    panel.hidden = !show;
    button.setAttribute('aria-expanded', String(show));
    if (show && !links) {
      replaceChildren(rows, h('p', { class: 'loading' }, 'Making links…'));
      links = Promise.all(KINDS.map((kind) => api.makeLink(id, kind.scope, LINK_TTL)));
      links.then(
        (made) => showLinks(made),
        (err: unknown) => {
          links = null;
          replaceChildren(rows);
          note.textContent = `Could not make links: ${err instanceof Error ? err.message : String(err)}`;
        },
      );
    }
  };

  const showLinks = (made: ShareLink[]) => {
    note.textContent = '';
    replaceChildren(
      rows,
      ...KINDS.map((kind, i) => {
        const link = made[i];
        const field = h('input', { class: 'share-url', type: 'text', readonly: true, 'aria-label': kind.label, value: link.url });
        field.addEventListener('focus', () => field.select());
        const copy = h('button', { class: 'button button-primary', type: 'button' }, kind.copy);
        copy.addEventListener('click', async () => {
          const copied = await copyText(link.url);
          flash(note, copied ? `${kind.label} copied` : 'Select the link and copy it.');
          if (!copied) field.select();
        });
        return h(
          'div',
          { class: 'share-row', 'data-scope': kind.scope },
          h('div', { class: 'share-label' }, h('strong', {}, kind.label), h('span', {}, kind.hint)),
          h('div', { class: 'share-link' }, field, copy),
        );
      }),
      h('p', { class: 'share-expiry' }, `Anyone with one of these links can open the document until ${fullDate(made[0].expires_at)}.`),
    );
  };

  button.addEventListener('click', () => open(button.getAttribute('aria-expanded') !== 'true'));
  panel.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      open(false);
      button.focus();
    }
  });
  return { button, panel };
}
