// A full-page message (unknown document, deleted document, page not found) with a way back.
import { h, replaceChildren } from './dom';

export function showMessage(main: HTMLElement, title: string, body: string): void {
  document.title = `${title} · tandem`;
  const heading = h('h1', { tabindex: -1 }, title);
  replaceChildren(
    main,
    h('section', { class: 'message', 'data-message': title }, heading, h('p', {}, body), h('p', {}, h('a', { class: 'button', href: '/' }, 'Go to all documents'))),
  );
  heading.focus();
}
