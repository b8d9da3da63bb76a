// End-to-end test of Spotlight's page in Debian's headless chromium, driven by playwright-core.
//
//   SPOTLIGHT_URL   base URL of a running `spotlight serve` (required)
//   ARTIFACTS       folder for the screenshots (default ../../../.ci/artifacts)
//   CHROMIUM        browser binary (default /usr/bin/chromium); never downloaded
//
// It types a prompt, generates, clicks a token, checks that training contexts with a
// highlighted target and a timeline appear, moves with the arrow keys, shows an API error,
// fetches the plot endpoints, runs a few training steps from the page, and saves
// screenshots at 1280 and 390 pixels wide.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = process.env.SPOTLIGHT_URL;
const ART = path.resolve(process.env.ARTIFACTS || path.join(here, '../../../.ci/artifacts'));
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
const PROMPT = process.env.SPOTLIGHT_PROMPT || 'The light';

let ctx, page, profile;
const consoleErrors = [];

before(async () => {
  assert.ok(BASE, 'set SPOTLIGHT_URL to a running spotlight serve');
  fs.mkdirSync(ART, { recursive: true });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'spotlight-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: EXE,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(60_000);
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
});

after(async () => {
  if (ctx) await ctx.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

async function shot(name) {
  const p = path.join(ART, name);
  await page.screenshot({ path: p, fullPage: true });
  console.log('screenshot: ' + p);
  return p;
}

test('the page loads and describes the model', async () => {
  const res = await page.goto(BASE + '/');
  assert.equal(res.status(), 200);
  await page.waitForFunction(() => /step \d+/.test(document.getElementById('model-info').textContent));
  const info = await page.textContent('#model-info');
  console.log('model: ' + info);
  assert.match(info, /training tokens/);
  // The layer checkboxes come from /v1/model.
  assert.ok(await page.locator('#layer-boxes input[name=layer]').count() >= 1);
});

test('generate, click a token: contexts with a highlighted target and a timeline', async () => {
  await page.fill('#prompt', PROMPT);
  await page.fill('#tokens', '24');
  await page.fill('#top-k', '5');
  await page.click('#generate');
  await page.waitForSelector('#text .tok');
  const n = await page.locator('#text .tok').count();
  assert.equal(n, 24, 'one clickable span per generated token');
  const text = await page.evaluate(() => window.spotlight.answer.text);
  console.log(`generated after ${JSON.stringify(PROMPT)}: ${JSON.stringify(text)}`);

  const tok = page.locator('#text .tok').nth(2);
  await tok.click();
  assert.equal(await tok.getAttribute('aria-pressed'), 'true');
  await page.waitForSelector('#details .layer-card .ctx mark.target');
  const cards = page.locator('#details .layer-card');
  assert.ok(await cards.count() >= 1, 'a card per layer');
  const marks = page.locator('#details .layer-card[data-layer=out] .ctx mark.target');
  assert.ok(await marks.count() >= 1, 'contexts of layer out have a highlighted target');
  const markText = await marks.first().textContent();
  assert.ok(markText.length >= 1, 'the highlighted target shows a character');
  const bg = await marks.first().evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.notEqual(bg, 'rgba(0, 0, 0, 0)', 'the target is visibly highlighted');

  // The timeline: an SVG with both series drawn and labelled axes.
  const tl = page.locator('#details .layer-card[data-layer=out] svg.timeline');
  await tl.waitFor();
  assert.equal(await tl.locator('path.series.attention').count(), 1);
  assert.equal(await tl.locator('path.series.contribution').count(), 1);
  const labels = await tl.locator('text.axis-label').allTextContents();
  assert.ok(labels.includes('training step'), 'x axis labelled: ' + labels);
  assert.ok(labels.some((l) => /attention mass/.test(l)), 'attention axis labelled');
  assert.ok(labels.some((l) => /contribution \(logit/.test(l)), 'contribution axis labelled');
  const d = await tl.locator('path.series.contribution').getAttribute('d');
  assert.match(d, /^M[\d.]+ [\d.]+( L[\d.]+ [\d.]+)+$/, 'the contribution series has points');

  // The per-layer numbers the page promises.
  const out = page.locator('#details .layer-card[data-layer=out]');
  const stats = await out.locator('.stat').allTextContents();
  for (const want of ['W₀ term', 'dual check', 'counterfactual', 'top-k share']) {
    assert.ok(stats.some((s) => s.includes(want)), `stat ${want} in ${stats}`);
  }
  assert.equal(await out.locator('.stat .ok').count(), 1, 'the dual check passes for out');
  assert.ok(await out.locator('.bar.attention .fill').count() >= 1);
  assert.ok(await out.locator('.bar.contribution .fill').count() >= 1);
  assert.match(await page.textContent('#details .verbatim'), /Verbatim/);

  const head = await page.textContent('#details .tok-head');
  const firstCtx = await out.locator('.ctx').first().textContent();
  const dual = await out.locator('.stat', { hasText: 'dual check' }).textContent();
  const cf = await out.locator('.stat', { hasText: 'counterfactual' }).textContent();
  console.log('clicked token: ' + head.replace(/\s+/g, ' ').trim());
  console.log('layer out, first context: ' + firstCtx.replace(/\s+/g, ' ').trim());
  console.log('layer out: ' + dual.replace(/\s+/g, ' ').trim() + ' | ' + cf.replace(/\s+/g, ' ').trim());
  await shot('web-1280.png');
});

test('arrow keys move between tokens', async () => {
  await page.locator('#text .tok').nth(2).focus();
  await page.keyboard.press('ArrowRight');
  let sel = await page.evaluate(() => document.activeElement.dataset.i);
  assert.equal(sel, '3');
  assert.equal(await page.locator('#text .tok.selected').getAttribute('data-i'), '3');
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  sel = await page.evaluate(() => document.activeElement.dataset.i);
  assert.equal(sel, '1');
  await page.keyboard.press('End');
  sel = await page.evaluate(() => document.activeElement.dataset.i);
  assert.equal(sel, '23');
  await page.waitForSelector('#details .layer-card .ctx mark.target');
});

test('the page works 390 pixels wide', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.locator('#text .tok').nth(2).click();
  // The click re-renders the details: wait for a laid-out timeline, not the one it replaces.
  const width = await (await page.waitForFunction(() => {
    const svg = document.querySelector('#details svg.timeline');
    const w = svg && svg.isConnected ? svg.getBoundingClientRect().width : 0;
    return w > 0 ? w : false;
  })).jsonValue();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at 390 px (overflow ${overflow}px)`);
  assert.ok(width > 250 && width <= 390, 'the timeline fits the width: ' + width);
  await shot('web-390.png');
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('API errors show on the page', async () => {
  await page.fill('#prompt', 'light ☃');
  await page.click('#generate');
  await page.waitForSelector('#error:not([hidden])');
  const msg = await page.textContent('#error');
  console.log('error shown: ' + msg.replace(/\s+/g, ' ').trim());
  assert.match(msg, /invalid_input/);
  assert.match(msg, /☃/);
  await page.click('#error-close');
  assert.equal(await page.isHidden('#error'), true);
});

test('timeline plots for scripts', async () => {
  for (const [fmt, type] of [['svg', 'image/svg+xml'], ['png', 'image/png']]) {
    const q = new URLSearchParams({ prompt: PROMPT, token: '1', layer: 'out', bins: '10' });
    const res = await page.request.get(`${BASE}/v1/plots/timeline.${fmt}?${q}`);
    assert.equal(res.status(), 200, await res.text());
    assert.equal(res.headers()['content-type'], type);
    const body = await res.body();
    fs.writeFileSync(path.join(ART, 'timeline.' + fmt), body);
    if (fmt === 'svg') assert.match(body.toString(), /training step/);
    else assert.deepEqual([...body.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  }
  const bad = await page.request.get(`${BASE}/v1/plots/timeline.svg?prompt=ab&token=-1`);
  assert.equal(bad.status(), 400);
  assert.ok((await bad.json()).error.code);
});

test('live training: progress and loss curve', async () => {
  await page.waitForSelector('#train-panel:not([hidden])');
  const before = await page.evaluate(() => fetch('/v1/train').then((r) => r.json()));
  await page.fill('#train-steps', '4');
  await page.click('#train-form button[type=submit]');
  // The page polls /v1/train; wait until it has shown the run and the run has ended.
  await page.waitForFunction(() => /Training: step/.test(document.getElementById('train-status').textContent), null, { timeout: 60_000 });
  await page.waitForSelector('#loss-chart svg.loss path.series', { timeout: 120_000 });
  await shot('web-training-1280.png');
  await page.waitForFunction((from) => {
    const s = document.getElementById('train-status').textContent;
    return /^Idle at step (\d+)/.test(s) && +/^Idle at step (\d+)/.exec(s)[1] >= from + 4;
  }, before.step, { timeout: 180_000 });
  console.log('training: ' + await page.textContent('#train-status'));
});

test('no script errors in the console', () => {
  // The deliberate bad prompt answers 400, which chromium logs as a failed resource.
  const real = consoleErrors.filter((e) => !/status of 400/.test(e));
  assert.deepEqual(real, []);
});
