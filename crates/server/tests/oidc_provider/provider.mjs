// A real OpenID Connect provider for the sign-in tests: panva/oidc-provider (certified
// OpenID Provider) on loopback, with its development login page (any login, any password).
// It speaks the real protocol — discovery, authorization with PKCE, the token endpoint with
// client authentication, JWKS, signed ID tokens — so the server under test cannot tell it
// from a company's provider. Test use only; never part of the product.
//
//   node provider.mjs --host 127.0.0.1 --client apogee:SECRET:REDIRECT_URI [--client …]
//
// Prints `issuer http://HOST:PORT` once it serves. Accounts are made up from the login typed:
// `dana` is dana@acme.test in org `acme`; `eve@globex.test` is in org `globex`; a login
// starting with `unverified` has an unverified email. Test switches (under /__test/, which a
// real provider does not have):
//   POST /__test/rotate        a new signing key; the JWKS publishes it first, the old one after
//   POST /__test/next-id-token {"claims": {...}, "unpublished_key": bool}
//                              the next token response's ID token gets these claims changed
//                              (null removes one), re-signed with the current key or with a
//                              key the JWKS never publishes

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { generateKeyPair, exportJWK, decodeJwt, SignJWT } from 'jose';

function args() {
  const out = { host: '127.0.0.1', clients: [] };
  const argv = process.argv.slice(2);
  for (let k = 0; k < argv.length; k += 1) {
    if (argv[k] === '--host') out.host = argv[(k += 1)];
    else if (argv[k] === '--client') {
      const [id, secret, ...redirect] = argv[(k += 1)].split(':');
      out.clients.push({ id, secret, redirect: redirect.join(':') });
    } else throw new Error(`unknown argument ${argv[k]}`);
  }
  if (out.clients.length === 0) throw new Error('at least one --client id:secret:redirect_uri');
  return out;
}

async function signingKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const jwk = await exportJWK(privateKey);
  return { jwk: { ...jwk, kid: `k-${randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' }, privateKey };
}

function account(login) {
  const [local, domain = 'acme.test'] = login.includes('@') ? login.split('@') : [login, 'acme.test'];
  const name = local.charAt(0).toUpperCase() + local.slice(1);
  return {
    sub: login,
    email: `${local}@${domain}`,
    email_verified: !local.startsWith('unverified'),
    name,
    preferred_username: local,
    org_id: domain.split('.')[0],
    hd: domain,
  };
}

const opts = args();
const cookieKeys = [randomBytes(32).toString('hex')];
let keys = [await signingKey()];
let nextIdToken = null;
let current = null;
let handler = null;

function makeProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: opts.clients.map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      redirect_uris: [c.redirect],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: keys.map((k) => k.jwk) },
    cookies: { keys: cookieKeys },
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      org: ['org_id', 'hd'],
    },
    // Claims of the scopes asked for go into the ID token, as Google, Entra ID, Okta and
    // Keycloak do for the code flow.
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => ({ accountId: id, claims: () => account(id) }),
    // First-party sign-in: no consent screen once logged in.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid email profile org');
      grant.addOIDCClaims(['email', 'email_verified', 'name', 'preferred_username', 'org_id', 'hd']);
      await grant.save();
      return grant;
    },
    features: { devInteractions: { enabled: true } },
  });
  // The test switch on ID tokens: applied to the next token response only.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== '/token' || !nextIdToken || !ctx.body || typeof ctx.body.id_token !== 'string') return;
    const change = nextIdToken;
    nextIdToken = null;
    const claims = decodeJwt(ctx.body.id_token);
    for (const [k, v] of Object.entries(change.claims || {})) {
      if (v === null) delete claims[k];
      else claims[k] = v;
    }
    const key = change.unpublished_key ? await signingKey() : keys[0];
    ctx.body = { ...ctx.body, id_token: await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.jwk.kid, typ: 'JWT' }).sign(key.privateKey) };
  });
  return provider;
}

function body(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (d) => {
      text += d;
      if (text.length > 65536) reject(new Error('too large'));
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

async function control(req, res, issuer) {
  const send = (status, obj) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  if (req.method === 'POST' && req.url === '/__test/rotate') {
    keys = [await signingKey(), keys[0]];
    current = makeProvider(issuer);
    handler = current.callback();
    return send(200, { kid: keys[0].jwk.kid, published: keys.map((k) => k.jwk.kid) });
  }
  if (req.method === 'POST' && req.url === '/__test/next-id-token') {
    nextIdToken = JSON.parse((await body(req)) || '{}');
    return send(200, { armed: true });
  }
  return send(404, { error: 'no such test switch' });
}

const servers = [];
function serve(host, port) {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      if (req.url.startsWith('/__test/')) {
        control(req, res, issuerUrl).catch((e) => {
          res.writeHead(500);
          res.end(String(e));
        });
        return;
      }
      handler(req, res);
    });
    server.once('error', reject);
    server.listen(port, host, () => {
      servers.push(server);
      resolve(server.address().port);
    });
  });
}

// Loopback only: `localhost` (used by the browser test so the provider is another site than
// the server on 127.0.0.1) listens on both of its addresses.
const first = opts.host === 'localhost' ? '127.0.0.1' : opts.host;
const port = await serve(first, 0);
if (opts.host === 'localhost') await serve('::1', port).catch(() => {});
const issuerUrl = `http://${opts.host}:${port}`;
current = makeProvider(issuerUrl);
handler = current.callback();
process.stdout.write(`issuer ${issuerUrl}\n`);

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const s of servers) s.close();
    process.exit(0);
  });
}

// A test that stopped reading is no reason to die mid-sign-in.
process.stdout.on('error', () => {});
