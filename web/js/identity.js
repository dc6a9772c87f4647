// Who the user is: a demo display name (localStorage), a pasted JWT (sessionStorage, so a
// token does not outlive the tab), or a browser session after signing in with the
// organisation's identity provider (an HttpOnly cookie the page never sees; the server says
// who it is and hands out the CSRF token at GET /auth/session).

const DEMO_KEY = 'apogee.demoUser';
const TOKEN_KEY = 'apogee.token';
const NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function validDemoName(name) {
  return NAME_RE.test(name);
}

/** The claims of a JWT, unverified: only used to name local storage keys and the button. */
export function jwtClaims(token) {
  try {
    const part = token.split('.')[1];
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

export function loadIdentity(mode) {
  if (mode === 'demo') {
    const user = localStorage.getItem(DEMO_KEY);
    return user && validDemoName(user) ? demoIdentity(user) : null;
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? jwtIdentity(token) : null;
}

export function demoIdentity(user) {
  return { mode: 'demo', user, org: 'demo', key: `demo:${user}`, label: user };
}

export function jwtIdentity(token) {
  const claims = jwtClaims(token);
  if (!claims || typeof claims.sub !== 'string') return null;
  const org = typeof claims.org === 'string' ? claims.org : '';
  return { mode: 'jwt', token, org, key: `jwt:${org}:${claims.sub}`, label: claims.sub };
}

/** The identity of a signed-in browser session (the body of GET /auth/session). */
export function sessionIdentity(s) {
  if (!s || typeof s.user_id !== 'string' || typeof s.org_id !== 'string' || typeof s.csrf_token !== 'string') return null;
  const name = typeof s.name === 'string' && s.name ? s.name : s.user_id;
  return {
    mode: 'session',
    user: s.user_id,
    org: s.org_id,
    email: typeof s.email === 'string' ? s.email : '',
    csrf: s.csrf_token,
    key: `session:${s.org_id}:${s.user_id}`,
    label: name,
  };
}

/** One or two letters for the avatar: the initials of the name's first two words. */
export function initials(label) {
  const words = String(label).replace(/@.*$/, '').split(/[\s._-]+/).filter(Boolean);
  const letters = words.slice(0, 2).map((w) => Array.from(w)[0].toUpperCase());
  return letters.join('') || '?';
}

export function saveIdentity(identity) {
  if (identity.mode === 'demo') localStorage.setItem(DEMO_KEY, identity.user);
  else sessionStorage.setItem(TOKEN_KEY, identity.token);
}

export function forgetIdentity(mode) {
  if (mode === 'demo') localStorage.removeItem(DEMO_KEY);
  else if (mode === 'jwt') sessionStorage.removeItem(TOKEN_KEY);
  // A browser session lives in its cookie: the server ends it (POST /auth/logout).
}
