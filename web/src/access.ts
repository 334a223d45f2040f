// What this page may do. The server says so (GET /api/access): the page never reads a token itself, so it
// cannot disagree with the server about what a token means.
import { Api, ApiError, type AccessView, type Scope } from './api';
import { showMessage } from './message';

/** The token a page uses (none in open mode) and what the server says it allows. */
export interface Pass {
  api: Api;
  access: AccessView;
}

const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

/** What a page is for: one document, or the document list (which only an admin of every document may see). */
export type Target = { doc: string } | 'list';

function reaches(access: AccessView, target: Target): boolean {
  if (target === 'list') return access.doc === '*' && access.scope === 'admin';
  return access.doc === '*' || access.doc === target.doc;
}

/** A token the server accepts that does not open this page; 403, as the server would answer on use. */
export class NotForThis extends ApiError {
  constructor(readonly access: AccessView) {
    super(403, 'this token does not give access to this page');
  }
}

/**
 * The pass for `target`, from the tokens this page has (in order of preference; none at all in open mode): the
 * one with the highest scope that reaches the target. When none does, throws the first token's problem (an
 * ApiError: 401 not valid or expired, 403 [NotForThis] for another document, 0 for an unreachable server).
 */
export async function choosePass(target: Target, tokens: string[]): Promise<Pass> {
  const candidates: Array<string | null> = tokens.length > 0 ? tokens : [null];
  const answers = await Promise.all(
    candidates.map(async (token) => {
      const api = new Api(token);
      try {
        return { api, access: await api.access() };
      } catch (error) {
        return { api, error };
      }
    }),
  );
  let best: Pass | null = null;
  let problem: unknown = null;
  for (const answer of answers) {
    if ('error' in answer) {
      problem ??= answer.error;
      continue;
    }
    // Open mode: nothing to choose, and no token to send.
    if (answer.access.mode === 'open') return { api: new Api(null), access: answer.access };
    if (!reaches(answer.access, target)) {
      problem ??= new NotForThis(answer.access);
      continue;
    }
    if (!best || RANK[answer.access.scope] > RANK[best.access.scope]) best = answer;
  }
  if (best) return best;
  throw problem;
}

/**
 * A pass for when the server could not be asked (it went away between serving the page and answering): open
 * mode's when the page has no token, else the least a token gives, so that nothing is typed that the server
 * may refuse later.
 */
export function guessPass(tokens: string[]): Pass {
  const token = tokens[0] ?? null;
  const access: AccessView = token
    ? { mode: 'token', doc: '*', scope: 'read', name: null, sub: null, expires_at: null }
    : { mode: 'open', doc: '*', scope: 'admin', name: null, sub: null, expires_at: null };
  return { api: new Api(token), access };
}

export function canWrite(access: AccessView): boolean {
  return access.scope !== 'read';
}

/** Share links need a token mode (the server signs them) and an admin of the document. */
export function canShare(access: AccessView): boolean {
  return access.mode === 'token' && access.scope === 'admin';
}

/** Why the server will not let this page in. */
export type Refusal = 'needed' | 'expired' | 'invalid' | 'forbidden';

/** The refusal an error stands for, if it is one; `hadToken` tells "no token" apart from "a bad token". */
export function refusalOf(err: unknown, hadToken: boolean): Refusal | null {
  if (!(err instanceof ApiError)) return null;
  if (err.status === 401) {
    if (!hadToken) return 'needed';
    // The server's exact words for an expired token (the other 401s describe what is wrong with it).
    return err.message === 'token expired' ? 'expired' : 'invalid';
  }
  if (err.status === 403) return 'forbidden';
  return null;
}

const PAGES: Record<Refusal, [string, string]> = {
  needed: ['This server needs an access token', 'Open a link you were given, or ask the person who runs it for one.'],
  expired: ['This link has expired', 'Links to this server last for a limited time. Ask the person who sent it to you for a new link.'],
  invalid: [
    'This link is not valid',
    'The access token in it was cut short, changed, or not made by this server. Check that you opened the whole link, or ask for a new one.',
  ],
  forbidden: [
    'This link does not give access to this document',
    'It was made for another document, or for less than this page needs. Ask the person who sent it for a link to this document.',
  ],
};

/** The full-page message for `refusal`; `action` is a way on, if the page knows one. */
export function showRefusal(main: HTMLElement, refusal: Refusal, action?: { label: string; href: string }): void {
  const [title, body] = PAGES[refusal];
  // "All documents" would only lead to another refusal: offer a way on only where there is one.
  showMessage(main, title, body, action ?? null);
}
