// Who this visitor is to others: a display name and a colour, chosen once and kept in localStorage.
// The name is the one the visitor picked; else the one their access token gives (a backend that mints tokens
// knows who the person is); else a random friendly one, kept apart so that a token's name can still take over.

/** A name the visitor picked. (Before tokens existed the random name was kept here too; it counts as picked.) */
const NAME_KEY = 'tandem.name';
const RANDOM_NAME_KEY = 'tandem.randomName';
const COLOR_KEY = 'tandem.color';

const ADJECTIVES = ['Brave', 'Calm', 'Clever', 'Curious', 'Gentle', 'Happy', 'Kind', 'Lucky', 'Merry', 'Nimble', 'Quiet', 'Swift', 'Sunny', 'Witty'];
const ANIMALS = ['Badger', 'Crane', 'Dolphin', 'Falcon', 'Fox', 'Heron', 'Koala', 'Lynx', 'Otter', 'Owl', 'Panda', 'Puffin', 'Robin', 'Wren'];

/** Colours dark enough for white label text, each with a light tint for selections. */
export const PALETTE: ReadonlyArray<{ color: string; light: string }> = [
  { color: '#d1495b', light: '#d1495b33' },
  { color: '#2f5bd3', light: '#2f5bd333' },
  { color: '#1b8a5a', light: '#1b8a5a33' },
  { color: '#8e44ad', light: '#8e44ad33' },
  { color: '#c0620c', light: '#c0620c33' },
  { color: '#0e7c86', light: '#0e7c8633' },
  { color: '#b03a8c', light: '#b03a8c33' },
  { color: '#56616e', light: '#56616e33' },
];

export interface Identity {
  name: string;
  color: string;
  colorLight: string;
}

function pick<T>(items: ReadonlyArray<T>): T {
  return items[Math.floor(Math.random() * items.length)];
}

function read(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage can be disabled; the identity then lasts for this page only.
  }
}

/** The name to show when the visitor picked none and the token gives none: random, chosen once. */
function randomName(): string {
  let name = read(RANDOM_NAME_KEY);
  if (!name) {
    name = `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
    write(RANDOM_NAME_KEY, name);
  }
  return name;
}

/** The identity: the picked name, else `tokenName` (from the page's token), else a random one; a kept colour. */
export function loadIdentity(tokenName: string | null = null): Identity {
  const name = read(NAME_KEY) || tokenName?.trim().slice(0, 40) || randomName();
  let entry = PALETTE.find((p) => p.color === read(COLOR_KEY));
  if (!entry) {
    entry = pick(PALETTE);
    write(COLOR_KEY, entry.color);
  }
  return { name, color: entry.color, colorLight: entry.light };
}

/** Stores a name the visitor picked (trimmed; an empty one is ignored) and returns the identity. */
export function saveName(name: string): Identity {
  const trimmed = name.trim().slice(0, 40);
  if (trimmed) write(NAME_KEY, trimmed);
  return loadIdentity();
}
