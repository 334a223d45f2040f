// The list of people who have this document open, from the awareness `user` field that
// y-codemirror.next also uses to label remote cursors.
import type { WebsocketProvider } from 'y-websocket';
import { h, replaceChildren } from './dom';

type Awareness = WebsocketProvider['awareness'];

interface User {
  name: string;
  color: string;
}

/** Awareness comes from other people's browsers: only a plain hex colour goes into a style attribute. */
const HEX_COLOR = /^#[0-9a-f]{3,8}$/i;
const FALLBACK_COLOR = '#56616e';

function userOf(state: Record<string, unknown>): User | null {
  const user = state.user as Partial<User> | undefined;
  if (!user || typeof user.name !== 'string') return null;
  const color = typeof user.color === 'string' && HEX_COLOR.test(user.color) ? user.color : FALLBACK_COLOR;
  return { name: user.name.slice(0, 60), color };
}

/** Renders everyone present into `list`, the local visitor first; one entry per name and colour. */
export function renderPresence(list: HTMLElement, awareness: Awareness): void {
  const self = awareness.getLocalState();
  const me = self ? userOf(self) : null;
  const others = new Map<string, User>();
  awareness.getStates().forEach((state, clientId) => {
    if (clientId === awareness.clientID) return;
    const user = userOf(state);
    if (user) others.set(`${user.name}\u0000${user.color}`, user);
  });
  const sorted = [...others.values()].sort((a, b) => a.name.localeCompare(b.name));
  const entry = (user: User, isSelf: boolean) =>
    h(
      'li',
      { class: isSelf ? 'person person-self' : 'person', title: isSelf ? `${user.name} (you)` : user.name },
      h('span', { class: 'person-dot', style: `background-color: ${user.color}`, 'aria-hidden': 'true' }, user.name.slice(0, 1).toUpperCase()),
      h('span', { class: 'person-name' }, user.name),
      isSelf ? h('span', { class: 'person-you' }, '(you)') : null,
    );
  replaceChildren(list, me ? entry(me, true) : null, ...sorted.map((user) => entry(user, false)));
  const count = sorted.length + (me ? 1 : 0);
  list.setAttribute('aria-label', count === 1 ? 'Only you are here' : `${count} people here`);
}
