// REST calls of PROTOCOL.md §7 with the right credentials: `X-Apogee-User` in demo mode,
// `Authorization: Bearer` with a pasted JWT, and with a browser session its cookie (sent by
// the browser) plus the session's `X-CSRF-Token`, without which the server refuses the call.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** PROTOCOL.md's bounds, for a server too old to say them in `/api/config`. */
const PROTOCOL_LIMITS = { message_chars: 8000 };

export async function fetchConfig() {
  try {
    const res = await fetch('/api/config', { headers: { Accept: 'application/json' } });
    if (res.ok) {
      const body = await res.json();
      if (body && (body.auth === 'demo' || body.auth === 'jwt')) return { ...body, limits: { ...PROTOCOL_LIMITS, ...body.limits } };
    }
  } catch {
    // fall through: an older server without /api/config
  }
  // Without the endpoint, guess demo: the sign-in form then says what the server refused.
  return { auth: 'demo', limits: PROTOCOL_LIMITS };
}

/** Who this browser's session cookie signs in (GET /auth/session), or null when none does. */
export async function fetchSession() {
  let res;
  try {
    res = await fetch('/auth/session', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached.');
  }
  if (res.status === 401) return null;
  if (!res.ok) throw new ApiError(res.status, 'http', `HTTP ${res.status}`);
  return res.json();
}

/** Ends this browser's session (or, `everywhere`, every session of its user). */
export async function signOut(identity, everywhere = false) {
  const res = await fetch(everywhere ? '/auth/logout/everywhere' : '/auth/logout', {
    method: 'POST',
    headers: { Accept: 'application/json', 'X-CSRF-Token': identity.csrf },
  });
  if (!res.ok) throw new ApiError(res.status, 'http', `HTTP ${res.status}`);
}

export class Api {
  /** @param identity {mode: 'demo', user} | {mode: 'jwt', token} | {mode: 'session', csrf} */
  constructor(identity) {
    this.identity = identity;
  }

  headers(extra = {}) {
    const h = { Accept: 'application/json', ...extra };
    if (this.identity.mode === 'demo') h['X-Apogee-User'] = this.identity.user;
    else if (this.identity.mode === 'session') h['X-CSRF-Token'] = this.identity.csrf;
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
