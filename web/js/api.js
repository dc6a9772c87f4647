// REST calls of PROTOCOL.md §7 with the right credentials: `X-Apogee-User` in demo mode,
// `Authorization: Bearer` in JWT mode.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export async function fetchConfig() {
  try {
    const res = await fetch('/api/config', { headers: { Accept: 'application/json' } });
    if (res.ok) {
      const body = await res.json();
      if (body && (body.auth === 'demo' || body.auth === 'jwt')) return body;
    }
  } catch {
    // fall through: an older server without /api/config
  }
  // Without the endpoint, guess demo: the sign-in form then says what the server refused.
  return { auth: 'demo' };
}

export class Api {
  /** @param identity {mode: 'demo', user} | {mode: 'jwt', token} */
  constructor(identity) {
    this.identity = identity;
  }

  headers(extra = {}) {
    const h = { Accept: 'application/json', ...extra };
    if (this.identity.mode === 'demo') h['X-Apogee-User'] = this.identity.user;
    else h.Authorization = `Bearer ${this.identity.token}`;
    return h;
  }

  async request(method, path) {
    let res;
    try {
      res = await fetch(path, { method, headers: this.headers() });
    } catch (e) {
      throw new ApiError(0, 'network', 'The server cannot be reached.');
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = null;
    }
    if (!res.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(res.status, err.code || 'http', err.message || `HTTP ${res.status}`);
    }
    return body;
  }

  threads() {
    return this.request('GET', '/api/threads').then((b) => (b && Array.isArray(b.threads) ? b.threads : []));
  }

  messages(threadId) {
    return this.request('GET', `/api/threads/${encodeURIComponent(threadId)}/messages`).then((b) =>
      b && Array.isArray(b.messages) ? b.messages : [],
    );
  }

  runEvents(runId) {
    return this.request('GET', `/api/runs/${encodeURIComponent(runId)}/events`).then((b) =>
      b && Array.isArray(b.events) ? b.events : [],
    );
  }

  /** A single-use WebSocket ticket (JWT mode: browsers cannot set headers on WebSocket). */
  wsTicket() {
    return this.request('POST', '/api/ws-ticket');
  }
}
