// Budgets in the page: usage posted through REST crosses a budget and the alert appears live
// as a toast, with an unread badge; the panel shows the budget's progress.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tempDir, startServer, launchBrowser, signInDemo, screenshot } from './harness.mjs';

let dataDir;
let server;

before(async () => {
  dataDir = await tempDir('budgets');
  server = await startServer(dataDir);
});

after(async () => {
  if (server) await server.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function post(path, user, body, type = 'application/json') {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'X-Apogee-User': user, 'Content-Type': type },
    body,
  });
  assert.ok(res.ok, `${path}: ${res.status} ${await res.clone().text()}`);
  return res.json();
}

for (const [label, viewport] of [['desktop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]]) {
  test(`a crossing shows live as a toast with an unread badge (${label})`, async () => {
    const user = `ann-${label}`;
    const feature = `support-bot-${label}`;
    const b = await launchBrowser(viewport);
    try {
      const { page } = b;
      await signInDemo(page, server.url, user);
      await post('/api/budgets', user, JSON.stringify({ name: `Support bot (${label})`, amount_usd: 20, scope: { feature }, thresholds: [80], forecast_alert: false }));
      const line = JSON.stringify({ request_id: `e2e-${label}`, ts: new Date().toISOString(), model: 'gpt-4o', input_tokens: 10, output_tokens: 10, cost_usd: 17, feature });
      await post('/api/usage', 'ingest', `${line}\n`, 'application/x-ndjson');
      const toast = page.getByTestId('budget-toast').first();
      await toast.waitFor({ timeout: 15000 });
      const text = await toast.textContent();
      assert.match(text, new RegExp(`Budget alert: Support bot \\(${label}\\)`));
      assert.match(text, /passed 80%/);
      assert.match(text, new RegExp(feature));
      assert.equal(await page.locator('.budgets-badge').textContent(), '1');
      await screenshot(page, `budgets-toast-${label}`);
      await page.getByTestId('budgets-button').click();
      const row = page.locator('.budget-row', { hasText: `Support bot (${label})` });
      await row.waitFor({ timeout: 10000 });
      assert.equal(await row.getAttribute('data-state'), 'warning');
      assert.match(await row.textContent(), /\$17\.00 of \$20\.00/);
      assert.equal(await page.locator('.budgets-badge').isHidden(), true);
      await screenshot(page, `budgets-panel-${label}`);
    } finally {
      await b.close();
    }
  });
}

test('a budget set from the chat shows in the open Budgets panel at once', async () => {
  const user = 'cat-chat';
  const feature = 'chat-made-bot';
  const line = JSON.stringify({ request_id: 'e2e-chat-budget', ts: new Date(Date.now() - 60000).toISOString(), model: 'gpt-4o', input_tokens: 10, output_tokens: 10, cost_usd: 3, feature });
  await post('/api/usage', 'ingest', `${line}\n`, 'application/x-ndjson');
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signInDemo(page, server.url, user);
    await page.getByTestId('budgets-button').click();
    await page.getByLabel('Your question').fill(`Set a monthly budget of $40 for ${feature}`);
    await page.keyboard.press('Enter');
    const row = page.locator('.budget-row', { hasText: `feature ${feature}` });
    await row.waitFor({ timeout: 20000 });
    assert.match(await row.textContent(), /\$3\.00 of \$40\.00/);
    await screenshot(page, 'budgets-from-chat-panel');
    await page.locator('.markdown', { hasText: `Done: a monthly budget of $40 for ${feature}` }).first().waitFor({ timeout: 20000 });
    // The run's header says what it was: a budget command, not an analysis.
    await page.locator('.run-headline', { hasText: /^Budget command done in / }).last().waitFor({ timeout: 20000 });
  } finally {
    await b.close();
  }
});
