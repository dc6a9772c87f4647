// Layout, not only behaviour, in real Chromium at phone, tablet and desktop widths: the
// sign-in card centred with a sensible width, a finished answer scrolled to its top, a report's
// tables scrolling inside their card, and no element wider than the window. The screenshots of
// each state are kept (target/e2e-screenshots; docs/screenshots through scripts/screenshots).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tempDir, loadDemoData, startServer, startProxy, launchBrowser, screenshot, signInDemo } from './harness.mjs';

const WIDTHS = [
  [360, 740, 'phone'],
  [768, 1024, 'tablet'],
  [1280, 800, 'desktop'],
];

let dataDir;
let server;

before(async () => {
  dataDir = await tempDir('layout');
  // scripts/screenshots asks for the history `apogee serve --demo-data` loads (200,000 calls),
  // so the README's pictures show its figures; the tests need far fewer.
  await loadDemoData(dataDir, Number(process.env.DEMO_CALLS) || 20000);
  server = await startServer(dataDir, { env: { APOGEE_MESSAGES_PER_MINUTE: '600', APOGEE_MESSAGE_BURST: '50' } });
});

after(async () => {
  if (server) await server.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/**
 * Visible elements that stick out of the window sideways and are not clipped by a box that
 * scrolls or hides its overflow (a wide table inside its scrolling card is fine; a card wider
 * than the phone is not). Returns a short description of each.
 */
function overflowing(page) {
  return page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const clippedInside = (el) => {
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const ox = getComputedStyle(p).overflowX;
        if (ox !== 'visible') {
          const r = p.getBoundingClientRect();
          return r.left >= -0.5 && r.right <= vw + 0.5;
        }
      }
      return false;
    };
    const out = [];
    for (const el of document.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (el.closest('.sr-only, [hidden], .sidebar:not(.open)')) continue;
      if (r.right <= vw + 0.5 && r.left >= -0.5) continue;
      if (clippedInside(el)) continue;
      out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')} [${Math.round(r.left)}, ${Math.round(r.right)}] in ${vw}`);
    }
    return out.slice(0, 10);
  });
}

test('the sign-in card is centred with a sensible width from 360 to 1920 px', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await page.goto(server.url);
    await page.locator('#signin').waitFor();
    for (const [width, height, name] of [...WIDTHS, [1920, 1080, 'wide']]) {
      await page.setViewportSize({ width, height });
      await page.waitForTimeout(100);
      const box = await page.locator('#signin').boundingBox();
      const vw = await page.evaluate(() => document.documentElement.clientWidth);
      const left = box.x;
      const right = vw - (box.x + box.width);
      assert.ok(Math.abs(left - right) <= 2, `${width}px: card at ${left}..${box.x + box.width}, not centred`);
      assert.ok(box.width <= 480, `${width}px: card ${box.width}px wide`);
      assert.ok(box.width >= Math.min(340, vw - 32), `${width}px: card squeezed to ${box.width}px`);
      assert.ok(left >= 8, `${width}px: card touches the edge`);
      assert.deepEqual(await overflowing(page), [], `${width}px`);
      if (name === 'phone' || name === 'desktop') await screenshot(page, `signin-${name}`, `signin-${name}`);
    }
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

/** Asks `question` by typing it; resolves with the new run once its answer is shown. */
async function ask(page, question) {
  const before = await page.locator('.run').count();
  await page.locator('#composer-input').fill(question);
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('.run').length > n, before, { timeout: 15000 });
  const run = page.locator('.run').nth(before);
  await run.locator(':scope[data-status="ok"]').waitFor({ timeout: 60000 });
  await run.locator('.answer .answer-lead').waitFor();
  // Two frames: the view scrolls in the render pass that shows the answer.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  return run;
}

/** Where `selector` (inside the run) sits relative to the conversation's visible box. */
function placement(run, selector) {
  return run.evaluate((el, sel) => {
    const target = sel ? el.querySelector(sel) : el;
    const box = document.getElementById('conversation').getBoundingClientRect();
    const r = target.getBoundingClientRect();
    return { top: r.top - box.top, bottom: r.bottom - box.top, height: box.height };
  }, selector);
}

for (const [width, height, name] of WIDTHS) {
  test(`a finished report at ${width} px: its top in view, tables scroll in their card, nothing wider than the window`, async () => {
    const b = await launchBrowser({ width, height });
    try {
      const { page } = b;
      await signInDemo(page, server.url, `e2e-layout-${name}`);
      // A short answer first, so the report below starts well under the top of the thread.
      await ask(page, 'How much did gpt-4o cost in the last 7 days?');
      const run = await ask(page, 'Analyze my AI costs');
      const scrolled = await page.evaluate(() => document.getElementById('conversation').scrollTop);
      assert.ok(scrolled > 0, `${width}px: the thread did not scroll at all`);
      // The run's start (its one-line timeline, then the KPIs or the answer) is at the top...
      const start = await placement(run, null);
      assert.ok(start.top >= -1 && start.top <= 40, `${width}px: the run starts at ${start.top}px of the conversation`);
      // ...and the answer's first element (its headline figures or first sentence) is in view.
      const first = await placement(run, '.report-visuals, .answer > :first-child');
      assert.ok(first.top >= 0 && first.top < first.height - 40, `${width}px: first answer element at ${first.top}px of ${first.height}`);
      // The page itself never scrolls sideways; wide tables scroll inside their own card.
      assert.deepEqual(await overflowing(page), [], `${width}px`);
      const tables = await run.evaluate((el) =>
        [...el.querySelectorAll('.table-wrap')].map((w) => ({ overflowX: getComputedStyle(w).overflowX, fits: w.getBoundingClientRect().right <= document.documentElement.clientWidth + 0.5 })),
      );
      assert.ok(tables.length > 0, 'the report has tables');
      for (const t of tables) assert.ok(t.overflowX === 'auto' && t.fits, JSON.stringify(t));
      // Chart labels are plain text: no markdown syntax leaks into them.
      const labels = await run.evaluate((el) => [...el.querySelectorAll('.chart text, .chart figcaption')].map((t) => t.textContent));
      assert.ok(labels.length > 0, 'the report has charts');
      for (const l of labels) assert.doesNotMatch(l, /[`*]|\]\(/, l);
      if (name !== 'tablet') await screenshot(page, `layout-report-${name}`, `report-${name}`);
      await run.locator('.table-wrap').first().evaluate((el) => el.scrollIntoView({ block: 'center' }));
      await screenshot(page, `layout-report-table-${name}`);
      assert.deepEqual(b.errors, []);
    } finally {
      await b.close();
    }
  });
}

test('a running answer, and `/` reopening the last conversation', async () => {
  const proxy = await startProxy(server.addr);
  const b = await launchBrowser({ width: 1280, height: 800 });
  let releaseHistory;
  try {
    const { page } = b;
    await signInDemo(page, proxy.url, 'e2e-layout-running');
    // The page also reads a new thread's history over REST. On a busy machine that answer can
    // come after the run ended on the server, and the page would rightly show it finished:
    // hold history reads until the running screenshots are taken.
    const historyHeld = new Promise((resolve) => {
      releaseHistory = resolve;
    });
    await page.route(/\/api\/(threads\/[^/]+\/messages|runs\/[^/]+\/events)/, async (route) => {
      await historyHeld;
      await route.continue().catch(() => {});
    });
    // Freeze the link when the optimization agent starts, so the page shows the run mid-way.
    const frozen = proxy.freezeOn('"agent":"optimization"');
    await page.locator('#composer-input').fill('Analyze my AI costs');
    await page.keyboard.press('Enter');
    await frozen;
    await page.locator('.run[data-status="running"] .step').nth(2).waitFor();
    await page.waitForTimeout(300);
    assert.equal(await page.locator('.run').last().getAttribute('data-status'), 'running');
    assert.deepEqual(await overflowing(page), [], 'running, desktop');
    await screenshot(page, 'layout-running-desktop', 'running-desktop');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(150);
    assert.deepEqual(await overflowing(page), [], 'running, phone');
    await screenshot(page, 'layout-running-phone', 'running-phone');
    const thread = await page.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('thread'));
    assert.ok(thread, 'the question opened its thread');
  } finally {
    releaseHistory?.();
    await b.close();
    await proxy.close();
  }
  // The same browser profile is gone; a new one opens `/` after using a thread.
  const c = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = c;
    await signInDemo(page, server.url, 'e2e-layout-reopen');
    await ask(page, 'How much did gpt-4o cost in the last 7 days?');
    const thread = await page.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('thread'));
    await page.goto(`${server.url}/`);
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
    await page.locator('.run .answer .answer-lead').waitFor();
    assert.equal(await page.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('thread')), thread);
    // "New chat" is the last thing opened: `/` then opens a new chat.
    await page.locator('#new-chat').click();
    await page.goto(`${server.url}/`);
    await page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 15000 });
    await page.locator('#welcome').waitFor();
    assert.equal(await page.locator('.run').count(), 0);
    assert.deepEqual(c.errors, []);
  } finally {
    await c.close();
  }
});
