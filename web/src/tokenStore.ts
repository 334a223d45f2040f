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
export interface GivenToken {
  token: string;
  fresh: boolean;
}

/**
 * The token of `owner`: the address bar's `?token=` if there is one (taken out of the address at once), else the
 * one kept from an earlier visit. A fresh one is kept only once the server has accepted it ([keepToken]), so a
 * mistyped or expired link does not push out a token that still works.
 */
export function takeToken(owner: TokenFor): GivenToken | null {
  const url = new URL(location.href);
  const given = url.searchParams.get('token');
  if (given !== null) {
    url.searchParams.delete('token');
    history.replaceState(history.state, '', url.pathname + url.search + url.hash);
    if (given) return { token: given, fresh: true };
  }
  const kept = read(keyOf(owner));
  return kept ? { token: kept, fresh: false } : null;
}

/** Keeps `token` for `owner`'s later visits, in place of any kept before. */
export function keepToken(owner: TokenFor, token: string): void {
  write(keyOf(owner), token);
}

/** The token kept for `owner`, without looking at the address. */
export function keptToken(owner: TokenFor): string | null {
  return read(keyOf(owner));
}
