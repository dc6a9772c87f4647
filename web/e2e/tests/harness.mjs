// Shared test plumbing: the real `apogee` binary on loopback with its own temp data dir and a
// clean environment, Debian's Chromium driven by playwright-core with a fresh profile (and the
// page's test switch on), a loopback TCP proxy that can go silent like a dead link, and the
// checks of what the page received.

import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../../..');
export const BIN = process.env.APOGEE_BIN || path.join(ROOT, 'target/debug/apogee');
export const SHOTS = process.env.E2E_SCREENSHOTS || path.join(ROOT, 'target/e2e-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export async function tempDir(prefix) {
  return mkdtemp(path.join(tmpdir(), `apogee-e2e-${prefix}-`));
}

/**
 * The environment of every `apogee` a test starts: a clean one (an exported
 * APOGEE_DATABASE_URL, APOGEE_AUTH or APOGEE_REDIS_URL must not change what a test exercises)
 * plus what the test sets. Only variables that shape the server's stderr are kept.
 */
export function serverEnv(dataDir, extra) {
  // Without the demo-auth warning each demo server gives once: it would fill the test output.
  const env = { APOGEE_DATA_DIR: dataDir, RUST_LOG: process.env.RUST_LOG || 'warn,apogee_server::demo_auth=off' };
  if (process.env.RUST_BACKTRACE) env.RUST_BACKTRACE = process.env.RUST_BACKTRACE;
  return { ...env, ...extra };
}

export async function loadDemoData(dataDir, calls = 20000) {
  await promisify(execFile)(BIN, ['demo-data', '--calls', String(calls)], { env: serverEnv(dataDir, {}) });
}

/** Starts `apogee serve`; resolves once it prints `listening on http://ADDR`. */
export function startServer(dataDir, { addr = '127.0.0.1:0', env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['serve'], { env: serverEnv(dataDir, { APOGEE_ADDR: addr, ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), 30000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1], addr: m[1].replace('http://', ''), child, stop: () => stopServer(child) });
      }
    });
    child.stderr.on('data', (d) => {
      err = (err + d).slice(-4000);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${err}`));
    });
  });
}

export function stopServer(child, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** A fresh Chromium profile in a temp dir, removed by `close()`. */
export async function launchBrowser(viewport = { width: 1280, height: 800 }) {
  const profile = await tempDir('profile');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  // The page's one test switch (web/js/test_taps.js), set before any of its scripts run.
  await context.addInitScript(() => {
    window.__apogeeTest = true;
  });
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Saves a screenshot under target/e2e-screenshots, and under $DOCS_SCREENSHOTS as `docsName`. */
export async function screenshot(page, name, docsName) {
  await mkdir(SHOTS, { recursive: true });
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file });
  if (docsName && process.env.DOCS_SCREENSHOTS) {
    await mkdir(process.env.DOCS_SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: path.join(process.env.DOCS_SCREENSHOTS, `${docsName}.png`) });
  }
  return file;
}

/** Opens the UI and signs in as a demo user. */
export async function signInDemo(page, url, name) {
  await page.goto(url);
  await page.getByLabel('Display name').fill(name);
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
}

/** The run's stored events, straight from the server (the truth to compare the page with). */
export async function runEvents(url, user, runId) {
  const res = await fetch(`${url}/api/runs/${runId}/events`, { headers: { 'X-Apogee-User': user } });
  if (!res.ok) throw new Error(`run events: HTTP ${res.status}`);
  return (await res.json()).events;
}

/** What the page shows for a run: its steps and tool calls. */
export async function pageRun(page, runId) {
  return page.evaluate((id) => {
    const run = document.querySelector(`.run[data-run-id="${id}"]`);
    if (!run) return null;
    return {
      status: run.dataset.status,
      steps: [...run.querySelectorAll('.step')].map((s) => ({ agent: s.dataset.agent, status: s.dataset.status, tools: [...s.querySelectorAll('.item.tool')].map((t) => ({ tool: t.dataset.tool, status: t.dataset.status })) })),
    };
  }, runId);
}

/** Asserts the page shows exactly the run the server stored: every step once, every tool once. */
export function expectedRun(events) {
  const steps = [];
  const open = new Map();
  for (const e of events) {
    if (e.type === 'agent_started') {
      const s = { agent: e.agent, status: 'running', tools: [] };
      steps.push(s);
      open.set(e.agent, s);
    } else if (e.type === 'tool_executing') {
      open.get(e.agent).tools.push({ tool: e.tool, status: 'running', call: e.call_id });
    } else if (e.type === 'tool_completed') {
      const t = open.get(e.agent).tools.find((x) => x.call === e.call_id);
      t.status = e.status;
    } else if (e.type === 'agent_completed') {
      open.get(e.agent).status = e.status;
    }
  }
  return steps.map((s) => ({ ...s, tools: s.tools.map(({ tool, status }) => ({ tool, status })) }));
}

/**
 * Every stream event the page received (`window.__apogee.received()`, recorded before the
 * page drops seqs it has seen) arrived exactly once and in order: a gap-free run of seqs.
 */
export function assertExactlyOnceInOrder(received) {
  const seqs = received.map((e) => e.seq);
  assert.ok(seqs.length > 0, 'no stream event received');
  const doubled = seqs.filter((s, k) => seqs.indexOf(s) !== k);
  assert.deepEqual(doubled, [], `the server delivered seqs more than once: ${seqs}`);
  for (let k = 1; k < seqs.length; k += 1) assert.equal(seqs[k], seqs[k - 1] + 1, `seqs out of order or with a gap: ${seqs}`);
}

/** At a cut, with `received` delivered so far, run `runId` had started and not ended. */
export function assertMidRun(received, runId, cut) {
  const supervisor = (type) => received.some((e) => e.run_id === runId && e.agent === 'supervisor' && e.type === type);
  assert.ok(supervisor('agent_started'), `the ${cut} came before run ${runId} started`);
  assert.ok(!supervisor('agent_completed'), `the ${cut} came after run ${runId} ended: nothing was left to resume`);
}

/** The length of the server-to-client (unmasked) WebSocket frame at the start of `buf`, or `null` while it is incomplete. */
function frameSize(buf) {
  if (buf.length < 2) return null;
  const len7 = buf[1] & 0x7f;
  const mask = buf[1] & 0x80 ? 4 : 0;
  let header = 2;
  let len = len7;
  if (len7 === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    header = 4;
  } else if (len7 === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    header = 10;
  }
  const size = header + mask + len;
  return buf.length < size ? null : size;
}

/**
 * A TCP proxy on loopback in front of `upstream` (`host:port`), for the dead-link path: once
 * armed with `freezeOn(marker)`, the first WebSocket frame from the server containing `marker`
 * is delivered and then every WebSocket connection open at that moment freezes — nothing more
 * is forwarded either way and nothing is closed, as when a network path dies without a word.
 * Connections opened later (the page reconnecting) are forwarded normally.
 *
 * The proxy cuts at frame boundaries, not at TCP chunks: a busy server writes several frames
 * in one chunk, and a cut by chunk would leave the page a varying number of frames short of
 * the marker. Cut by frame, the page holds exactly the frames up to and including the marker.
 */
export function startProxy(upstream) {
  const [host, port] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
  const links = new Set();
  let armed = null;
  let webSockets = 0;
  const server = net.createServer((client) => {
    const link = { client, server: net.connect(port, host), ws: null, frozen: false, upgraded: false, pending: Buffer.alloc(0) };
    links.add(link);
    const forget = () => {
      if (link.frozen) return; // a dead link says nothing, not even goodbye
      links.delete(link);
      client.destroy();
      link.server.destroy();
    };
    client.on('data', (d) => {
      if (link.ws === null) {
        link.ws = d.toString('latin1').startsWith('GET /ws');
        if (link.ws) webSockets += 1;
      }
      if (!link.frozen) link.server.write(d);
    });
    link.server.on('data', (d) => {
      if (link.frozen) return;
      if (!link.ws) {
        client.write(d);
        return;
      }
      link.pending = Buffer.concat([link.pending, d]);
      if (!link.upgraded) {
        const end = link.pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        client.write(link.pending.subarray(0, end + 4));
        link.pending = link.pending.subarray(end + 4);
        link.upgraded = true;
      }
      // Forward whole frames; a partial frame waits for the rest of its bytes.
      for (;;) {
        const size = frameSize(link.pending);
        if (size === null) return;
        const frame = link.pending.subarray(0, size);
        link.pending = link.pending.subarray(size);
        client.write(frame);
        if (armed && frame.toString('latin1').includes(armed.marker)) {
          const { resolve } = armed;
          armed = null;
          for (const l of links) if (l.ws) l.frozen = true;
          resolve();
          return;
        }
      }
    });
    for (const s of [client, link.server]) {
      s.on('error', forget);
      s.on('close', forget);
    }
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const addr = `127.0.0.1:${server.address().port}`;
      resolve({
        addr,
        url: `http://${addr}`,
        /** Resolves when the freeze happened. */
        freezeOn: (marker) =>
          new Promise((done) => {
            armed = { marker, resolve: done };
          }),
        /** WebSocket connections the proxy has seen opened. */
        webSockets: () => webSockets,
        close: () =>
          new Promise((done) => {
            for (const l of links) {
              l.client.destroy();
              l.server.destroy();
            }
            server.close(() => done());
          }),
      });
    });
  });
}
