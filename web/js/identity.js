// Who the user is: a demo display name (localStorage) or a pasted JWT (sessionStorage, so a
// token does not outlive the tab).

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
    return user && validDemoName(user) ? { mode, user, key: `demo:${user}`, label: user } : null;
  }
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? jwtIdentity(token) : null;
}

export function jwtIdentity(token) {
  const claims = jwtClaims(token);
  if (!claims || typeof claims.sub !== 'string') return null;
  const org = typeof claims.org === 'string' ? claims.org : '';
  return { mode: 'jwt', token, key: `jwt:${org}:${claims.sub}`, label: claims.sub };
}

export function saveIdentity(identity) {
  if (identity.mode === 'demo') localStorage.setItem(DEMO_KEY, identity.user);
  else sessionStorage.setItem(TOKEN_KEY, identity.token);
}

export function forgetIdentity(mode) {
  if (mode === 'demo') localStorage.removeItem(DEMO_KEY);
  else sessionStorage.removeItem(TOKEN_KEY);
}
