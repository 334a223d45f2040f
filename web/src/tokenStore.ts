// Access tokens this browser was given. A link like /d/{id}?token=... carries one; the page keeps it in
// localStorage (one per document, and one for the document list) and takes it out of the address bar, so it is
// neither left in the history nor copied along with the address, and a later visit to /d/{id} still works.

/** Whose token: one document's, or the document list's (which an admin's `doc: "*"` token opens). */
export type TokenFor = { doc: string } | 'list';

function keyOf(owner: TokenFor): string {
  return owner === 'list' ? 'tandem.token.list' : `tandem.token.doc.${owner.doc}`;
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
    // Storage can be disabled; the token then lasts for this page only.
  }
}

/** A token for this page, and whether it came in the address just now (rather than from an earlier visit). */
export interface KeptToken {
  token: string;
  fresh: boolean;
}

/**
 * The token of `owner`: the address bar's `?token=` if there is one (which replaces any kept before, and is
 * removed from the address), else the one kept from an earlier visit.
 */
export function takeToken(owner: TokenFor): KeptToken | null {
  const url = new URL(location.href);
  const given = url.searchParams.get('token');
  if (given !== null) {
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    if (given) {
      write(keyOf(owner), given);
      return { token: given, fresh: true };
    }
  }
  const kept = read(keyOf(owner));
  return kept ? { token: kept, fresh: false } : null;
}

/** The token kept for `owner`, without looking at the address. */
export function keptToken(owner: TokenFor): string | null {
  return read(keyOf(owner));
}
