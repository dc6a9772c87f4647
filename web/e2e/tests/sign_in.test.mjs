// Signing in with the organisation's identity provider, in a real browser: a real OpenID
// provider (panva's oidc-provider, on `localhost`, so it is another site than the server on
// 127.0.0.1) with its login page, the server in JWT mode with OpenID Connect, Chromium going
// through the provider's page, then asking a question. And what another origin can do with
// the session cookie: nothing (CSRF token, Origin check).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ROOT, BIN, tempDir, startServer, launchBrowser, screenshot, serverEnv } from './harness.mjs';

const PROVIDER = process.env.APOGEE_TEST_OIDC_PROVIDER || path.join(ROOT, 'crates/server/tests/oidc_provider/provider.mjs');
const SECRET = 'e2e-client-secret';

let dataDir;
let provider;
let server;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The provider on `localhost`; resolves with its issuer once it serves. */
function startProvider(redirect) {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [PROVIDER, '--host', 'localhost', '--client', `apogee:${SECRET}:${redirect}`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error('the OpenID provider did not start')), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/issuer (\S+)/);
      if (m && timer) {
        clearTimeout(timer);
        resolve({ issuer: m[1], stop: () => child.kill('SIGTERM') });
      }
    });
    child.on('exit', (code) => reject(new Error(`the OpenID provider exited with ${code}`)));
  });
}

before(async () => {
  dataDir = await tempDir('oidc');
  await promisify(execFile)(BIN, ['demo-data', '--org', 'acme', '--calls', '20000'], { env: serverEnv(dataDir, {}) });
  const port = await freePort();
  provider = await startProvider(`http://127.0.0.1:${port}/auth/callback`);
  server = await startServer(dataDir, {
    addr: `127.0.0.1:${port}`,
    env: {
      APOGEE_AUTH: 'jwt',
      APOGEE_OIDC_ISSUER: provider.issuer,
      APOGEE_OIDC_CLIENT_ID: 'apogee',
      APOGEE_OIDC_CLIENT_SECRET: SECRET,
      APOGEE_OIDC_PROVIDER_NAME: 'Acme SSO',
      APOGEE_OIDC_SCOPES: 'openid email profile org',
      APOGEE_OIDC_ORG_CLAIM: 'org_id',
    },
  });
});

after(async () => {
  if (server) await server.stop();
  if (provider) provider.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** From the app's sign-in screen through the provider's login page, back signed in. */
async function signIn(page, login) {
  await page.goto(server.url);
  await page.getByRole('link', { name: 'Sign in with Acme SSO' }).click();
  await page.waitForURL((u) => u.origin === new URL(provider.issuer).origin);
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.waitForURL((u) => u.origin === server.url);
  await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
}

test('signing in through the provider\'s login page, then asking "Analyze my AI costs"', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page, context } = b;
    // The app's own console errors (the provider's login page loads things of its own).
    const appErrors = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && (m.location().url || '').startsWith(server.url)) appErrors.push(m.text());
    });
    page.on('pageerror', (e) => appErrors.push(String(e)));
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(server.url);
    const button = page.getByRole('link', { name: 'Sign in with Acme SSO' });
    await button.waitFor();
    assert.equal(await page.locator('#jwt-form').isVisible(), false, 'the token form is a developer setting');
    await screenshot(page, 'sign-in-desktop', 'sign-in-desktop');

    await signIn(page, 'dana');
    await page.getByRole('button', { name: 'Signed in as Dana, organisation acme. Account menu' }).waitFor();
    assert.equal(await page.locator('#account-name').innerText(), 'Dana');
    assert.equal(await page.locator('#account-org').innerText(), 'acme');
    // The session cookie: HttpOnly (the page cannot read it), SameSite=Lax.
    const cookies = await context.cookies(server.url);
    const session = cookies.find((c) => c.name === 'apogee_session');
    assert.ok(session, JSON.stringify(cookies));
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Lax');
    assert.equal(await page.evaluate(() => document.cookie.includes('apogee_session')), false);
    // The WebSocket goes with the cookie: no ticket, no token in the URL.
    assert.ok(sockets.length >= 1 && !sockets[0].includes('ticket='), JSON.stringify(sockets));

    await page.getByRole('button', { name: 'Analyze my AI costs' }).click();
    const run = page.locator('.run').first();
    await run.waitFor({ timeout: 15000 });
    await page.locator('.run[data-status="ok"]').first().waitFor({ timeout: 60000 });
    await run.locator('.answer .answer-lead', { hasText: 'You spent' }).waitFor();
    await run.locator('[data-chart="by-model"] svg rect').first().waitFor();
    assert.match(await run.locator('.answer').innerText(), /\$\d/);
    await screenshot(page, 'signed-in-desktop', 'signed-in-desktop');

    // The account menu, at desktop and phone widths.
    await page.locator('#identity-button').click();
    await page.getByRole('button', { name: 'Sign out everywhere' }).waitFor();
    assert.match(await page.locator('#menu-detail').innerText(), /dana@acme\.test · Organisation acme/);
    await screenshot(page, 'account-menu-desktop');
    await page.keyboard.press('Escape');
    await page.setViewportSize({ width: 390, height: 844 });
    await screenshot(page, 'signed-in-phone', 'signed-in-phone');
    await page.locator('#identity-button').click();
    await screenshot(page, 'account-menu-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page wider than a phone by ${overflow}px`);

    // Sign out: back to the sign-in screen, the session gone on the server too.
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByText('You signed out.').waitFor();
    await page.getByRole('link', { name: 'Sign in with Acme SSO' }).waitFor();
    await screenshot(page, 'signed-out-phone');
    const me = await page.evaluate(() => fetch('/auth/session').then((r) => r.status));
    assert.equal(me, 401);
    // The one expected error: the 401 of asking for the session just signed out.
    assert.deepEqual(appErrors.filter((e) => !e.includes('401')), []);
  } finally {
    await b.close();
  }
});

test('another origin cannot use the session cookie: no CSRF token, no WebSocket', async () => {
  // A page on another port of the same host: same site (the SameSite=Lax cookie goes with
  // its requests), another origin (it cannot read the CSRF token).
  const evil = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>evil</title>
      <form id="f" method="post" action="${server.url}/api/usage" enctype="text/plain">
        <input name='[{"request_id":"csrf-e2e","ts":"2026-01-02T03:04:05Z","model":"gpt-4o","input_tokens":1,"output_tokens":1,"x":"' value='"}]'>
      </form>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const evilUrl = `http://127.0.0.1:${evil.address().port}`;
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signIn(page, 'dana');
    const before = await page.evaluate(() => fetch('/auth/session').then((r) => r.json()));

    await page.goto(evilUrl);
    // A cross-origin WebSocket with the cookie: refused before any frame.
    const ws = await page.evaluate(
      (url) =>
        new Promise((resolve) => {
          const s = new WebSocket(url);
          let ready = false;
          s.onmessage = (m) => {
            ready = ready || m.data.includes('connection_ready');
          };
          s.onclose = (e) => resolve({ code: e.code, ready });
        }),
      `${server.url.replace('http', 'ws')}/ws`,
    );
    assert.deepEqual(ws, { code: 1006, ready: false });
    // A cross-origin fetch with the cookie: refused (and unreadable anyway).
    const fetched = await page.evaluate((url) => fetch(`${url}/api/ws-ticket`, { method: 'POST', credentials: 'include', mode: 'no-cors' }).then((r) => r.type), server.url);
    assert.equal(fetched, 'opaque');
    // A form posted across origins carries the cookie and no token: 403.
    await Promise.all([page.waitForURL(`${server.url}/api/usage`), page.evaluate(() => document.getElementById('f').submit())]);
    const answer = await page.locator('body').innerText();
    assert.match(answer, /"forbidden"/, answer);
    assert.match(answer, /X-CSRF-Token/, answer);

    // Back in the app, still signed in; nothing was ingested.
    await page.goto(server.url);
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
    const after = await page.evaluate(async (csrf) => {
      const r = await fetch('/api/costs?from=2026-01-01&to=2026-01-31', { headers: { 'X-CSRF-Token': csrf } });
      return r.json();
    }, before.csrf_token);
    assert.equal(after.totals.calls, 0, JSON.stringify(after.totals));
  } finally {
    await b.close();
    evil.close();
  }
});

test('a failed sign-in says why; the token form appears only behind the developer setting', async () => {
  const b = await launchBrowser({ width: 390, height: 844 });
  const dir = await tempDir('oidc-dev');
  let dev = null;
  try {
    const { page } = b;
    // What /auth/callback sends the browser back with when the account has no org here.
    await page.goto(`${server.url}/#signin_error=org`);
    await page.getByText('Your account is not part of an organisation on this server').waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the code is taken out of the address bar');
    assert.equal(await page.getByRole('button', { name: /sign in with a token/ }).count(), 0);
    await screenshot(page, 'sign-in-error-phone');

    // With the developer setting, a pasted token still signs in, beside the provider.
    const port = await freePort();
    const secret = 'e2e-developer-secret-of-some-length';
    dev = await startServer(dir, {
      addr: `127.0.0.1:${port}`,
      env: {
        APOGEE_AUTH: 'jwt',
        APOGEE_JWT_HS256_SECRET: secret,
        APOGEE_OIDC_ISSUER: provider.issuer,
        APOGEE_OIDC_CLIENT_ID: 'apogee',
        APOGEE_OIDC_ORG: 'acme',
        APOGEE_OIDC_TOKEN_FORM: 'true',
      },
    });
    await page.goto(dev.url);
    await page.getByRole('link', { name: /^Sign in with localhost$/ }).waitFor();
    assert.equal(await page.locator('#jwt-form').isVisible(), false);
    await page.getByRole('button', { name: 'Developer: sign in with a token instead' }).click();
    const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'dev', org: 'acme', exp: Math.floor(Date.now() / 1000) + 600 })}`;
    const { createHmac } = await import('node:crypto');
    await page.getByLabel('Token').fill(`${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`);
    await screenshot(page, 'sign-in-token-form-phone');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: 'Signed in as dev, organisation acme. Account menu' }).waitFor();
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
  } finally {
    await b.close();
    if (dev) await dev.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
