// The REST client for /api. Every error the server sends is `{"error": "..."}` with a 4xx/5xx status.
// In auth mode every call carries the page's token as `Authorization: Bearer`; in open mode there is none.

export interface Doc {
  id: string;
  title: string;
  created_at: string;
  updated_at: string;
}

export interface DocPage {
  docs: Doc[];
  next_cursor: string | null;
}

export type Scope = 'read' | 'write' | 'admin';

/** What `GET /api/access` says the page's token allows (in open mode: everything, with no token at all). */
export interface AccessView {
  mode: 'open' | 'token';
  /** A document id, or `*` for every document. */
  doc: string;
  scope: Scope;
  /** The person the token was made for, if it says. */
  name: string | null;
  sub: string | null;
  expires_at: string | null;
}

/** A share link made by `POST /api/docs/{id}/links`. */
export interface ShareLink {
  url: string;
  token: string;
  scope: Scope;
  expires_at: string;
}

/** A kept state of a document (version history): its text is read apart, with `versionText`. */
export interface Version {
  id: string;
  doc_id: string;
  created_at: string;
  label: string | null;
  /** The display names of the people who edited since the version before. */
  editors: string[];
  /** Kept after a pause in editing, on request (`Name this version`), or just before a restore. */
  reason: 'auto' | 'request' | 'restore';
}

export interface VersionPage {
  versions: Version[];
  next_cursor: string | null;
}

/** A failed request: `status` is the HTTP status, or 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  get unreachable(): boolean {
    return this.status === 0;
  }
}

export class Api {
  /** `token` is sent with every call; null in open mode, or when the page has none. */
  constructor(readonly token: string | null) {}

  /** Sends a request and returns the response if it succeeded; throws an ApiError (with the server's words) if not. */
  private async send(method: string, path: string, body?: unknown, accept = 'application/json'): Promise<Response> {
    const headers: Record<string, string> = { accept };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'The server cannot be reached.');
    }
    if (!response.ok) {
      let message = `The server answered ${response.status}.`;
      try {
        const payload = await response.json();
        if (payload && typeof payload.error === 'string') message = payload.error;
      } catch {
        // Not JSON (a proxy error page, say): keep the generic message.
      }
      throw new ApiError(response.status, message);
    }
    return response;
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  access(): Promise<AccessView> {
    return this.request('GET', '/api/access');
  }

  listDocs(cursor: string | null, limit = 50): Promise<DocPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `/api/docs?${query}`);
  }

  getDoc(id: string): Promise<Doc> {
    return this.request('GET', `/api/docs/${encodeURIComponent(id)}`);
  }

  createDoc(title: string): Promise<Doc> {
    return this.request('POST', '/api/docs', { title });
  }

  renameDoc(id: string, title: string): Promise<Doc> {
    return this.request('PATCH', `/api/docs/${encodeURIComponent(id)}`, { title });
  }

  deleteDoc(id: string): Promise<void> {
    return this.request('DELETE', `/api/docs/${encodeURIComponent(id)}`);
  }

  /** A link that opens document `id` for someone else, with `scope` read (view) or write (edit), for `ttl`. */
  makeLink(id: string, scope: 'read' | 'write', ttl: string): Promise<ShareLink> {
    return this.request('POST', `/api/docs/${encodeURIComponent(id)}/links`, { scope, ttl });
  }

  // Version history: /api/docs/{id}/versions, newest first.

  listVersions(id: string, cursor: string | null, limit = 50): Promise<VersionPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (cursor) query.set('cursor', cursor);
    return this.request('GET', `${versionsPath(id)}?${query}`);
  }

  /** Keeps the document's state now as a version, named `label` if given. */
  makeVersion(id: string, label: string | null): Promise<Version> {
    return this.request('POST', versionsPath(id), label ? { label } : undefined);
  }

  /** The document's text as it was at version `vid`. */
  async versionText(id: string, vid: string): Promise<string> {
    const response = await this.send('GET', `${versionsPath(id)}/${encodeURIComponent(vid)}/text`, undefined, 'text/plain');
    return response.text();
  }

  deleteVersion(id: string, vid: string): Promise<void> {
    return this.request('DELETE', `${versionsPath(id)}/${encodeURIComponent(vid)}`);
  }

  /**
   * Brings the document back to version `vid`. The server changes the live document (every open editor follows);
   * the answer is the version it kept of the state just before, so that the restore can be undone.
   */
  restoreVersion(id: string, vid: string): Promise<Version> {
    return this.request('POST', `${versionsPath(id)}/${encodeURIComponent(vid)}/restore`);
  }
}

function versionsPath(id: string): string {
  return `/api/docs/${encodeURIComponent(id)}/versions`;
}
