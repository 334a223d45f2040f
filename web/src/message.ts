// A full-page message (unknown document, deleted document, refused link, page not found) with a way on.
import { h, replaceChildren } from './dom';

export interface MessageAction {
  label: string;
  href: string;
}

const ALL_DOCUMENTS: MessageAction = { label: 'Go to all documents', href: '/' };

/** `action` defaults to the document list; null shows none (for pages where the list would only refuse too). */
export function showMessage(main: HTMLElement, title: string, body: string, action: MessageAction | null = ALL_DOCUMENTS): void {
  document.title = `${title} · tandem`;
  const heading = h('h1', { tabindex: -1 }, title);
  replaceChildren(
    main,
    h(
      'section',
      { class: 'message', 'data-message': title },
      heading,
      h('p', {}, body),
      action ? h('p', {}, h('a', { class: 'button', href: action.href }, action.label)) : null,
    ),
  );
  heading.focus();
}
