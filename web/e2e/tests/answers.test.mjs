// Focused answers in a real browser: the first sentence prominent, the one chart that fits the
// question (a ranking, a daily series, a before/after), and follow-up questions that ask
// themselves in the same thread. Screenshots at phone and desktop widths.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { tempDir, loadDemoData, startServer, launchBrowser, screenshot, signInDemo } from './harness.mjs';

let dataDir;
let server;

before(async () => {
  dataDir = await tempDir('answers');
  await loadDemoData(dataDir, 20000);
  server = await startServer(dataDir, { env: { APOGEE_MESSAGES_PER_MINUTE: '600', APOGEE_MESSAGE_BURST: '50' } });
});

after(async () => {
  if (server) await server.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Types a question into the composer and sends it; returns the new run's element. */
async function askTyped(page, question) {
  const before = await page.locator('.run').count();
  await page.locator('#composer-input').fill(question);
  await page.keyboard.press('Enter');
  return waitNewRun(page, before);
}

async function waitNewRun(page, before) {
  await page.waitForFunction((n) => document.querySelectorAll('.run').length > n, before, { timeout: 15000 });
  const run = page.locator('.run').nth(before);
  await run.locator(':scope[data-status="ok"]').waitFor({ timeout: 60000 });
  await run.locator('.answer .answer-lead').waitFor();
  return run;
}

/** Scrolls the run's question to the top and screenshots it at both widths. */
async function shoot(page, run, name) {
  for (const [width, height, suffix] of [[1280, 800, 'desktop'], [390, 844, 'phone']]) {
    await page.setViewportSize({ width, height });
    await page.waitForTimeout(150);
    await run.evaluate((el) => (el.previousElementSibling || el).scrollIntoView({ block: 'start' }));
    const docs = ['figure', 'ranking'].includes(name) ? `answer-${name}-${suffix}` : undefined;
    await screenshot(page, `answer-${name}-${suffix}`, docs);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: page wider than the window by ${overflow}px at ${width}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
}

test('each kind of answer leads with its sentence and shows the chart that fits it', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-dana');
    const cases = [
      ['figure', 'How much did gpt-4o cost in the last 7 days?', 'series', /^gpt-4o cost \$[\d,.]+ in the last 7 days/],
      ['ranking', 'Which feature spends the most on gpt-4o?', 'ranking', /^support-bot spent the most on gpt-4o/],
      ['per-token', 'Which model is cheapest per 1k tokens?', 'ranking', /^gemini-2\.0-flash was the cheapest model per 1M tokens in the last 30 days .*: \$0\.\d+\.$/],
      ['by-hour', 'How much did we spend by hour of the day this week?', 'series', /^You spent \$[\d,.]+ this week .*; the highest hour of the day was \d\d:00–\d\d:00 UTC at \$[\d,.]+\.$/],
      ['by-weekday', 'Which day of the week is busiest?', 'ranking', /^[A-Z][a-z]+day was the busiest day of the week in the last 30 days .*: [\d,]+ calls a day\.$/],
      ['weekends', 'How much do we spend on weekends?', 'series', /^You spent \$[\d,.]+ a day on weekends in the last 30 days .*, against \$[\d,.]+ a day on weekdays: \$[\d,.]+ over \d+ weekend days\.$/],
      ['comparison', 'Compare this week to last week', 'before-after', /^You spent \$[\d,.]+ this week .*(up|down) [\d.]+% from \$[\d,.]+ last week/],
      ['what-if', 'What would we save by moving doc-summarizer from claude-sonnet-4 to claude-3-5-haiku?', 'before-after', /^Moving doc-summarizer from claude-sonnet-4 to claude-3-5-haiku would have cost \$/],
      ['drivers', 'Why is doc-summarizer so expensive?', 'series', /^doc-summarizer cost \$[\d,.]+ in the last 30 days .*of spend from [\d.]+% of calls\.$/],
      ['greeting', 'hello', null, /^Hello!/],
    ];
    for (const [name, question, chart, lead] of cases) {
      await page.locator('#new-chat').click();
      const run = await askTyped(page, question);
      const text = await run.locator('.answer .answer-lead').innerText();
      assert.match(text, lead, `${name}: ${text}`);
      // The lead is the answer's first element, set larger than the text after it.
      const sizes = await run.evaluate((el) => {
        const lead = el.querySelector('.answer-lead');
        const p = [...el.querySelectorAll('.answer p, .answer li')].find((x) => x !== lead);
        return [parseFloat(getComputedStyle(lead).fontSize), p ? parseFloat(getComputedStyle(p).fontSize) : 0];
      });
      assert.ok(sizes[0] > sizes[1], `${name}: lead ${sizes[0]}px, text ${sizes[1]}px`);
      if (chart) {
        await run.locator(`.answer [data-chart="${chart}"] svg rect`).first().waitFor();
        // The chart sits right under the first sentence.
        const order = await run.evaluate((el) => el.querySelector('.answer-lead').nextElementSibling?.dataset.chart);
        assert.equal(order, chart, name);
      } else {
        assert.equal(await run.locator('.answer [data-chart]').count(), 0, name);
        assert.equal(await run.locator('.report-visuals').count(), 0, name);
      }
      // A focused answer is no report: no KPI tiles, no section headings.
      if (name !== 'greeting') assert.equal(await run.locator('.report-visuals').count(), 0, name);
      assert.equal(await run.locator('.answer h4').count(), 0, name);
      // Follow-ups under a figure; a greeting's examples are in the answer itself.
      const followups = await run.locator('.followups button').count();
      if (name === 'greeting') assert.equal(followups, 0, name);
      else assert.ok(followups >= 1, `${name}: follow-ups`);
      // The run's header names what it was: a reply reads "Answered in …", a figure "Analysis done in …".
      const headline = await run.locator('.run-headline').innerText();
      assert.match(headline, name === 'greeting' ? /Answered in / : /Analysis done in /, `${name}: ${headline}`);
      // What drives it follows, against the org's average.
      if (name === 'drivers') {
        const body = await run.locator('.answer').innerText();
        assert.match(body, /doc-summarizer's calls cost \$[\d.]+ each on average, .* the org's average .* tokens each against [\d,]+ .* per million tokens against/, body);
      }
      await shoot(page, run, name);
    }
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('a question about one way to save leads with it and its chart, not the full report', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-fern');
    const run = await askTyped(page, 'Which features repeat the same prompts?');
    const lead = await run.locator('.answer .answer-lead').innerText();
    assert.match(lead, /^A response cache serving 80% of the repeats could save about \$[\d,.]+ a month: [\d,]+ calls in the last 30 days .* repeated one of [\d,]+ prompts sent more than once, costing \$[\d,.]+; most of it from support-bot/, lead);
    // The repeat cost by feature, right under the first sentence; no KPI tiles or report charts.
    await run.locator('.answer [data-chart="ranking"] svg rect').first().waitFor();
    const next = await run.evaluate((el) => el.querySelector('.answer-lead').nextElementSibling?.dataset.chart);
    assert.equal(next, 'ranking');
    assert.match(await run.locator('.answer [data-chart="ranking"]').innerText(), /Repeat cost by feature[\s\S]*support-bot/);
    assert.equal(await run.locator('.report-visuals').count(), 0);
    // Its own section first, then the other ways to save.
    const headings = await run.locator('.answer h4').allInnerTexts();
    assert.deepEqual(headings.slice(0, 2), ['Repeated prompts', 'Other ways to save']);
    await shoot(page, run, 'saving-kind');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('a follow-up suggestion asks itself in the same thread and refines the answer', async () => {
  const b = await launchBrowser({ width: 1280, height: 800 });
  try {
    const { page } = b;
    await signInDemo(page, server.url, 'e2e-erin');
    const first = await askTyped(page, 'How much did gpt-4o cost last week?');
    const thread = await page.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('thread'));
    const before = await page.locator('.run').count();
    await first.locator('.followups button', { hasText: 'Break that down by' }).click();
    const second = await waitNewRun(page, before);
    const lead = await second.locator('.answer .answer-lead').innerText();
    assert.match(lead, /^gpt-4o cost \$[\d,.]+ last week \(.*\), across \d+ features?; the largest/, lead);
    await second.locator('.answer [data-chart="ranking"] svg rect').first().waitFor();
    // Same thread: the question and its answer are under the first.
    assert.equal(await page.evaluate(() => new URLSearchParams(location.hash.slice(1)).get('thread')), thread);
    assert.equal(await page.locator('.message.from-user').count(), 2);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});
