// The golden path in a real browser, and the run surviving a cut socket, a dead link (the
// server stops answering; only the page's heartbeat can tell) and a server restart. What the
// page received is checked as it arrived, before the page drops seqs it has already seen.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tempDir, loadDemoData, startServer, launchBrowser, screenshot, signInDemo, runEvents, pageRun, expectedRun, assertExactlyOnceInOrder, assertMidRun, startProxy } from './harness.mjs';

let dataDir;
let server;

before(async () => {
  dataDir = await tempDir('data');
  await loadDemoData(dataDir, 20000);
  server = await startServer(dataDir);
});

after(async () => {
  if (server) await server.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Asks by clicking a suggestion; returns the run id the server acknowledged. */
async function ask(page, question) {
  await page.getByRole('button', { name: question }).click();
  const handle = await page.waitForFunction(() => {
    const m = [...window.__apogee.store.outbox.values()].find((x) => x.run_id);
    if (m) return m.run_id;
    const runs = [...document.querySelectorAll('.run')];
    return runs.length ? runs[runs.length - 1].dataset.runId : null;
  }, null, { timeout: 15000 });
  return handle.jsonValue();
}

async function waitRunEnd(page, runId, timeout = 60000) {
  const sel = (status) => `.run[data-run-id="${runId}"][data-status="${status}"]`;
  await page.locator(`${sel('ok')}, ${sel('error')}, ${sel('cancelled')}`).waitFor({ timeout });
}

const received = (page) => page.evaluate(() => window.__apogee.received());

/**
 * Waits until the run's end came over the socket. The page can show a run's end earlier, from
 * its REST read of the thread (a fast run is over before that read answers); a test of what the
 * socket delivers waits for the socket's own copy.
 */
async function waitRunEndOverSocket(page, runId, timeout = 60000) {
  await page.waitForFunction(
    (id) => window.__apogee.received().some((e) => e.run_id === id && e.agent === 'supervisor' && e.type === 'agent_completed'),
    runId,
    { timeout },
  );
}

test('asking "Analyze my AI costs" shows every agent step, the charts and the answer', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-alice');
    const runId = await ask(page, 'Analyze my AI costs');
    await waitRunEnd(page, runId);

    const events = await runEvents(server.url, 'e2e-alice', runId);
    assertExactlyOnceInOrder(await received(page));
    const shown = await pageRun(page, runId);
    assert.equal(shown.status, 'ok');
    assert.deepEqual(shown.steps, expectedRun(events));
    const agents = shown.steps.map((s) => s.agent);
    for (const a of ['supervisor', 'triage', 'data', 'optimization', 'report']) assert.ok(agents.includes(a), `no ${a} step in ${agents}`);

    // Charts from the supervisor's data, and the markdown answer with its tables.
    const run = page.locator(`.run[data-run-id="${runId}"]`);
    await run.locator('[data-chart="by-model"] svg rect').first().waitFor();
    assert.ok((await run.locator('[data-chart="daily"] svg rect').count()) >= 20);
    assert.equal(await run.locator('[data-chart="daily"] rect[data-marked="true"]').count(), 1);
    assert.ok((await run.locator('[data-chart="savings"] svg rect').count()) >= 1);
    // The answer leads with its first sentence, prominent, then the report's sections.
    await run.locator('.answer .answer-lead', { hasText: 'You spent' }).waitFor();
    assert.ok((await run.locator('.answer h4', { hasText: 'Spend by model' }).count()) === 1);
    assert.ok((await run.locator('.answer table').count()) >= 2);
    const answerText = await run.locator('.answer').innerText();
    const total = events.find((e) => e.type === 'agent_completed' && e.agent === 'supervisor').data.totals.cost_usd;
    const dollars = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(total);
    assert.ok(answerText.includes(dollars), `answer lacks the total ${dollars}`);

    // The timeline opens with the keyboard and shows the tools with their arguments.
    await run.locator('.timeline > summary').focus();
    await page.keyboard.press('Enter');
    await run.locator('.step[data-agent="data"] > details > summary').click();
    await run.locator('.step[data-agent="data"] .tool-args').first().waitFor();
    await screenshot(page, 'golden-timeline-desktop');
    await run.locator('.timeline > summary').click();
    await page.locator('.message.from-user').first().evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await screenshot(page, 'golden-report-desktop', 'report-desktop');
    assert.equal(await page.evaluate(() => document.scrollingElement.scrollTop), 0, 'the page itself scrolled');

    // The thread is listed, and a reload rebuilds the same run from REST history.
    await page.locator('.thread-link[aria-current="page"]').waitFor();
    await page.reload();
    await page.locator('#conn-status[data-state="open"]').waitFor();
    await waitRunEnd(page, runId);
    assert.deepEqual((await pageRun(page, runId)).steps, expectedRun(events));
    await run.locator('[data-chart="by-model"] svg rect').first().waitFor();

    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('.message.from-user').first().evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await screenshot(page, 'golden-report-phone', 'report-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page wider than a phone by ${overflow}px`);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('a socket cut mid-run resumes with last_seq: no step missing or doubled', async () => {
  // A spike question, so the anomaly agent runs too and the chart marks its day.
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-bob');
    // Cut the socket from the page the moment the data agent's first tool ends.
    await page.evaluate(() => window.__apogee.dropWhen({ type: 'tool_completed', agent: 'data' }));
    const runId = await ask(page, 'Why did spend jump?');
    await waitRunEnd(page, runId);
    await waitRunEndOverSocket(page, runId);

    const ready = await page.evaluate(() => window.__apogee.readyLog());
    assert.ok(ready.length >= 2, `expected a reconnect, saw ${JSON.stringify(ready)}`);
    assert.ok(ready.slice(1).some((r) => r.replayed > 0), `no replay after the cut: ${JSON.stringify(ready)}`);
    const got = await received(page);
    assertExactlyOnceInOrder(got);
    const cutAt = got.findIndex((e) => e.type === 'tool_completed' && e.agent === 'data');
    assertMidRun(got.slice(0, cutAt + 1), runId, 'socket cut');

    const events = await runEvents(server.url, 'e2e-bob', runId);
    const shown = await pageRun(page, runId);
    assert.equal(shown.status, 'ok');
    assert.deepEqual(shown.steps, expectedRun(events));
    assert.ok(shown.steps.some((s) => s.agent === 'anomaly'), JSON.stringify(shown.steps));
    await page.locator(`.run[data-run-id="${runId}"] .answer .answer-lead`).first().waitFor();
    const spike = events.find((e) => e.type === 'agent_completed' && e.agent === 'supervisor').data.spike;
    const marked = page.locator(`.run[data-run-id="${runId}"] [data-chart="daily"] rect[data-marked="true"]`);
    assert.equal(await marked.getAttribute('data-day'), spike.day);
    await page.locator('#conn-status[data-state="open"]').waitFor();
    await page.locator(`.run[data-run-id="${runId}"] .report-visuals`).evaluate((el) => el.scrollIntoView({ block: 'start' }));
    await screenshot(page, 'socket-cut-resumed');
    assert.deepEqual(b.errors.filter((e) => !e.includes('WebSocket')), []);
  } finally {
    await b.close();
  }
});

test('the server restarting mid-run: the page reconnects and the run ends whole', async () => {
  // A server of its own on a fixed port, so the page can find it again after the restart.
  const dir = await tempDir('restart');
  await loadDemoData(dir, 20000);
  let srv = await startServer(dir);
  const addr = srv.addr;
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, srv.url, 'e2e-carol');
    // Stop the server (SIGTERM) the moment the data agent calls its first tool.
    let stopping = null;
    await page.exposeFunction('e2eStopServer', () => {
      stopping ??= srv.stop();
    });
    await page.evaluate(() =>
      window.__apogee.onEvent((f) => {
        if (f.type === 'tool_executing' && f.agent === 'data') window.e2eStopServer();
      }),
    );
    await page.getByRole('button', { name: 'Analyze my AI costs' }).click();
    await page.waitForFunction(() => document.querySelector('#conn-status').dataset.state !== 'open', null, { timeout: 15000 });
    await stopping;
    const atStop = await received(page);
    // The same port again; the old socket may linger for a moment.
    for (let attempt = 1; ; attempt += 1) {
      try {
        srv = await startServer(dir, { addr });
        break;
      } catch (e) {
        if (attempt >= 10) throw e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 30000 });
    const runId = await page.locator('.run').first().getAttribute('data-run-id');
    await waitRunEnd(page, runId);
    await waitRunEndOverSocket(page, runId);

    assertExactlyOnceInOrder(await received(page));
    assertMidRun(atStop, runId, 'server stop');
    const events = await runEvents(srv.url, 'e2e-carol', runId);
    const shown = await pageRun(page, runId);
    assert.deepEqual(shown.steps, expectedRun(events));
    assert.ok(shown.steps.every((s) => s.status !== 'running'), JSON.stringify(shown.steps));
    await screenshot(page, 'server-restart-resumed');

    // The connection works after the restart: a second question in the same thread.
    const before = await page.locator('.run').count();
    await page.getByLabel('Your question').fill('How can we cut our bill?');
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => document.querySelectorAll('.run').length > n, before);
    const second = await page.locator('.run').last().getAttribute('data-run-id');
    await waitRunEnd(page, second);
    assert.equal(await page.locator(`.run[data-run-id="${second}"]`).getAttribute('data-status'), 'ok');
  } finally {
    await b.close();
    await srv.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a dead link mid-run (the server stops answering) is noticed by the heartbeat; the run resumes whole', async () => {
  // The page talks to the server through a proxy that, mid-run, stops forwarding anything on the open socket without closing it: no close, no error, just
  // silence. A short heartbeat (1 s, so two missed periods is ~2 s) keeps the test brisk.
  const dir = await tempDir('deadlink');
  await loadDemoData(dir, 20000);
  const srv = await startServer(dir, { env: { APOGEE_HEARTBEAT_MS: '1000' } });
  const proxy = await startProxy(srv.addr);
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, proxy.url, 'e2e-dana');
    // Every text the connection status shows, in order (a reconnect passes through quickly).
    await page.evaluate(() => {
      window.e2eConnLog = [];
      const status = document.querySelector('#conn-status');
      new MutationObserver(() => window.e2eConnLog.push(document.querySelector('#conn-text').textContent)).observe(status, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    // The second data query: well after the ack and the run's start reached the page.
    const frozen = proxy.freezeOn('"tool":"spend_by_model"');
    const runId = await ask(page, 'Analyze my AI costs');
    await frozen;
    await page.waitForFunction(() => window.e2eConnLog.some((t) => t.includes('no answer from the server')), null, { timeout: 15000 });
    assertMidRun(await received(page), runId, 'dead link');

    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
    await waitRunEnd(page, runId);
    await waitRunEndOverSocket(page, runId);
    const ready = await page.evaluate(() => window.__apogee.readyLog());
    assert.equal(ready.length, 2, JSON.stringify(ready));
    assert.ok(ready[1].replayed > 0, `nothing replayed after the dead link: ${JSON.stringify(ready)}`);
    assert.equal(proxy.webSockets(), 2, 'one socket before the dead link, one after');
    assertExactlyOnceInOrder(await received(page));
    const events = await runEvents(srv.url, 'e2e-dana', runId);
    const shown = await pageRun(page, runId);
    assert.equal(shown.status, 'ok');
    assert.deepEqual(shown.steps, expectedRun(events));
    const log = await page.evaluate(() => window.e2eConnLog);
    assert.ok(!log.some((t) => t.includes('the connection was lost')), `the page was told, not left to notice: ${JSON.stringify(log)}`);
  } finally {
    await b.close();
    await proxy.close();
    await srv.stop();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a message whose ack was lost is re-sent with the same client_msg_id: one run, not two', async () => {
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-erin');
    await page.evaluate(() => window.__apogee.dropAfterNextSend());
    const runId = await ask(page, 'How can we cut our bill?');
    await waitRunEnd(page, runId);
    const acks = await page.evaluate(() => window.__apogee.ackLog());
    assert.equal(acks.length, 1, JSON.stringify(acks));
    assert.equal(acks[0].duplicate, true, 'the re-sent message was not recognised as the same one');
    assertExactlyOnceInOrder(await received(page));
    assert.equal(await page.locator('.run').count(), 1);
    assert.equal(await page.locator('.message.from-user').count(), 1);
    assert.equal(await page.locator('.run[data-status="ok"]').count(), 1);
  } finally {
    await b.close();
  }
});

test('a message typed while offline waits in the outbox, survives a reload, and is sent once', async () => {
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-fay');
    // The composer keeps to the server's message limit, read from /api/config.
    assert.equal(await page.getByLabel('Your question').evaluate((t) => t.maxLength), 8000);
    await page.evaluate(() => window.__apogee.conn.stop());
    await page.getByLabel('Your question').fill('Analyze my AI costs');
    await page.keyboard.press('Enter');
    await page.locator('.message.pending[data-state="sending"]').waitFor();
    await page.reload();
    await page.locator('#conn-status[data-state="open"]').waitFor();
    const run = page.locator('.run[data-status="ok"]');
    await run.waitFor({ timeout: 60000 });
    assert.equal(await page.locator('.run').count(), 1);
    assert.equal(await page.locator('.message.from-user').count(), 1);
    assertExactlyOnceInOrder(await received(page));
    const threads = await (await fetch(`${server.url}/api/threads`, { headers: { 'X-Apogee-User': 'e2e-fay' } })).json();
    assert.equal(threads.threads.length, 1);
  } finally {
    await b.close();
  }
});

test('resync_required (the server lacks the events after last_seq) reloads history over REST', async () => {
  const b = await launchBrowser();
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-gus');
    const runId = await ask(page, 'Analyze my AI costs');
    await waitRunEnd(page, runId);
    // A last_seq beyond the server's head, as after the database was replaced.
    await page.evaluate(() => localStorage.setItem('apogee.lastSeq.demo:e2e-gus', '999999'));
    await page.reload();
    await page.locator('#conn-status[data-state="open"]').waitFor();
    const ready = await page.evaluate(() => window.__apogee.readyLog());
    assert.equal(ready[0].resync_required, true, JSON.stringify(ready));
    await waitRunEnd(page, runId);
    const events = await runEvents(server.url, 'e2e-gus', runId);
    assert.deepEqual((await pageRun(page, runId)).steps, expectedRun(events));
    const stored = await page.evaluate(() => Number(localStorage.getItem('apogee.lastSeq.demo:e2e-gus')));
    assert.equal(stored, ready[0].head_seq);
    await page.locator('.thread-link').first().waitFor();
  } finally {
    await b.close();
  }
});
