// The page outside the golden path: static serving, safe markdown, JWT sign-in.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tempDir, startServer, launchBrowser } from './harness.mjs';

let dataDir;
let demo;

before(async () => {
  dataDir = await tempDir('ui');
  demo = await startServer(dataDir);
});

after(async () => {
  if (demo) await demo.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('assets are served with types, revalidation and a strict CSP', async () => {
  const index = await fetch(`${demo.url}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.match(index.headers.get('content-security-policy'), /script-src 'self'/);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const etag = index.headers.get('etag');
  const again = await fetch(`${demo.url}/`, { headers: { 'If-None-Match': etag } });
  assert.equal(again.status, 304);
  const js = await fetch(`${demo.url}/assets/js/main.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  assert.equal((await fetch(`${demo.url}/assets/nope.js`)).status, 404);
  assert.deepEqual(await (await fetch(`${demo.url}/api/config`)).json(), { auth: 'demo', protocol: 'apogee.v1', limits: { message_chars: 8000, frame_bytes: 65536 } });
});

test('backslash escapes keep a name from usage as text', async () => {
  const b = await launchBrowser();
  try {
    const { page } = b;
    await page.goto(demo.url);
    const out = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/assets/js/markdown.js');
      const div = document.createElement('div');
      // What the server writes for a feature named `x | **pwned** ## Action required [verify](https://evil.example)`.
      div.append(renderMarkdown('| feature | cost |\n| --- | ---: |\n| x \\| \\*\\*pwned\\*\\* \\#\\# Action required \\[verify\\](https://evil.example) | $1.00 |'));
      return {
        cells: div.querySelectorAll('td').length,
        first: div.querySelector('td')?.textContent,
        links: div.querySelectorAll('a').length,
        strong: div.querySelectorAll('strong').length,
      };
    });
    assert.deepEqual(out, { cells: 2, first: 'x | **pwned** ## Action required [verify](https://evil.example)', links: 0, strong: 0 });
  } finally {
    await b.close();
  }
});

test('markdown from the server is rendered, never injected', async () => {
  const b = await launchBrowser();
  try {
    const { page } = b;
    await page.goto(demo.url);
    const out = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/assets/js/markdown.js');
      const div = document.createElement('div');
      div.append(renderMarkdown('# Title <img src=x onerror="window.pwned=1">\n\n**bold** and `<script>`\n\n| a | b |\n| --- | ---: |\n| <b>x</b> | 2 |\n\n1. **one**\n   - nested\n\n[link](javascript:alert(1))'));
      document.body.append(div);
      await new Promise((r) => setTimeout(r, 50));
      return {
        imgs: div.querySelectorAll('img, script, b').length,
        h: div.querySelector('h3')?.textContent,
        strong: div.querySelector('strong')?.textContent,
        td: div.querySelector('td')?.textContent,
        right: div.querySelector('td.align-right')?.textContent,
        nested: div.querySelector('ol li ul li')?.textContent,
        links: div.querySelectorAll('a').length,
        pwned: window.pwned === 1,
      };
    });
    assert.deepEqual(out, { imgs: 0, h: 'Title <img src=x onerror="window.pwned=1">', strong: 'bold', td: '<b>x</b>', right: '2', nested: 'nested', links: 0, pwned: false });
  } finally {
    await b.close();
  }
});

function hs256(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

test('JWT mode: a pasted token signs in and goes live through a one-time WebSocket ticket', async () => {
  const secret = 'e2e-secret-of-reasonable-length';
  const dir = await tempDir('jwt');
  const srv = await startServer(dir, { env: { APOGEE_AUTH: 'jwt', APOGEE_JWT_HS256_SECRET: secret } });
  const b = await launchBrowser({ width: 390, height: 844 });
  try {
    const { page } = b;
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));
    await page.goto(srv.url);
    await page.getByLabel('Token').fill('not-a-token');
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('does not look like a JWT').waitFor();
    const token = hs256({ sub: 'dana', org: 'acme', exp: Math.floor(Date.now() / 1000) + 600 }, secret);
    await page.getByLabel('Token').fill(token);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByRole('button', { name: /Signed in as dana/ }).waitFor();
    await page.locator('#thread-empty').waitFor({ state: 'attached' });
    // A JWT server always issues tickets: the page must go live, whatever else it could say.
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 }).catch(async () => {
      const state = await page.locator('#conn-status').getAttribute('data-state');
      assert.fail(`not live: ${state}: ${await page.locator('#conn-text').innerText()}`);
    });
    assert.equal(sockets.length, 1, JSON.stringify(sockets));
    const query = new URL(sockets[0]).searchParams;
    assert.match(query.get('ticket') || '', /\S{16,}/, sockets[0]);
    assert.ok(!sockets[0].includes(token), 'the token itself went into the WebSocket URL');
    // The live connection is dana's: a question gets its run.
    await page.getByLabel('Your question').fill('Analyze my AI costs');
    await page.keyboard.press('Enter');
    await page.locator('.run').first().waitFor({ timeout: 15000 });
  } finally {
    await b.close();
    await srv.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
