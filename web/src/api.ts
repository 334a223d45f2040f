// The REST client for /api/docs. Every error the server sends is `{"error": "..."}` with a 4xx/5xx status.

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

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
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
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export function listDocs(cursor: string | null, limit = 50): Promise<DocPage> {
  const query = new URLSearchParams({ limit: String(limit) });
  if (cursor) query.set('cursor', cursor);
  return request('GET', `/api/docs?${query}`);
}

export function getDoc(id: string): Promise<Doc> {
  return request('GET', `/api/docs/${encodeURIComponent(id)}`);
}

export function createDoc(title: string): Promise<Doc> {
  return request('POST', '/api/docs', { title });
}

export function renameDoc(id: string, title: string): Promise<Doc> {
  return request('PATCH', `/api/docs/${encodeURIComponent(id)}`, { title });
}

export function deleteDoc(id: string): Promise<void> {
  return request('DELETE', `/api/docs/${encodeURIComponent(id)}`);
}
