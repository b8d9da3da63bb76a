// End-to-end test of Spotlight's page in Debian's headless chromium, driven by playwright-core.
//
//   SPOTLIGHT_URL   base URL of a running `spotlight serve` (required)
//   ARTIFACTS       folder for the screenshots (default ../../../.ci/artifacts)
//   CHROMIUM        browser binary (default /usr/bin/chromium); never downloaded
//
// It checks the legend and the model's schedule note, types a prompt, generates, checks
// the text highlighted by its best passages, clicks a token, checks the pattern table, the
// coloured passages, training contexts with a highlighted target and a timeline, limits the
// answer to a timeline bin's steps and back, switches the ranking and grouping, moves with
// the arrow keys, checks a counterfactual by retraining, ranks the training tokens by exact
// influence and checks that by retraining too, shows an API error, fetches the
// plot endpoints, runs a few training steps
// from the page (loss ticks apart, the served step caught up), and saves screenshots at
// 1280 and 390 pixels wide.
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

  // A model short of its schedule says so and offers the remaining steps.
  const m = await page.evaluate(() => fetch('/v1/model').then((r) => r.json()));
  if (m.step < m.config.steps) {
    await page.waitForSelector('#schedule-note:not([hidden])');
    const note = await page.textContent('#schedule-note');
    console.log('schedule: ' + note);
    const [, done, of] = /Trained ([\d,]+) of ([\d,]+) steps/.exec(note).map((x) => (x ? +x.replace(/,/g, '') : x));
    assert.deepEqual([done, of], [m.step, m.config.steps]);
    assert.equal(await page.inputValue('#train-steps'), String(m.config.steps - m.step));
  } else {
    assert.equal(await page.isHidden('#schedule-note'), true, 'no schedule note for a model that ran its schedule');
  }
});

test('the legend explains every number', async () => {
  const terms = await page.locator('#legend dt').allTextContents();
  for (const want of ['contribution', 'α', 'W₀', 'bias', 'dual check', 'first-order', 'margin', 'counterfactual', 'shared context', 'passages']) {
    assert.ok(terms.some((t) => t.includes(want)), `legend explains ${want}: ${terms}`);
  }
  const cf = await page.locator('#legend dt:has-text("counterfactual") + dd').textContent();
  assert.match(cf, /final weights minus/);
  assert.match(cf, /not a retraining/);
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

  // The text leads with the evidence: characters tinted by their best passage, runs with
  // the same best passage in one span, and that passage shown under the text.
  const spans = page.locator('#text .pspan.has');
  assert.ok(await spans.count() >= 1, 'at least one span has a best passage');
  const tinted = await page.locator('#text .pspan.has .tok:not(.selected)').first().evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.match(tinted, /^rgba\(31, 138, 91, 0\.\d+\)$/, 'a supported character is tinted green: ' + tinted);
  const starts = await spans.evaluateAll((els) => els.map((e) => e.dataset.start));
  for (let i = 1; i < starts.length; i++) {
    const adjacent = await spans.nth(i).evaluate((el) => el.previousElementSibling && el.previousElementSibling.classList.contains('has'));
    if (adjacent) assert.notEqual(starts[i], starts[i - 1], 'neighbouring spans have different best passages');
  }
  const first = await spans.first().locator('.tok').first().getAttribute('data-i');
  await page.hover(`#text .tok[data-i="${first}"]`);
  const hovered = page.locator('#span-passage .passage');
  await hovered.waitFor();
  const a0 = await page.evaluate(() => window.spotlight.answer);
  assert.equal(await hovered.getAttribute('data-start'), String(a0.tokens[+first].layers.out.passages[0].start),
    'hovering shows the best passage of that character');
  assert.ok(await page.locator('#span-passage .passage-text span').count() > 10);

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

  // The pattern table: row 0 is every training token of the layer, rows nested below it.
  const model = await page.evaluate(() => fetch('/v1/model').then((r) => r.json()));
  const entries = model.layers.find((l) => l.name === 'out').entries;
  const rows = out.locator('table.patterns tbody tr');
  assert.ok(await rows.count() >= 2, 'pattern rows 0 and at least 1');
  const cells0 = await rows.first().locator('td').allTextContents();
  assert.equal(cells0[0], '0');
  assert.equal(+cells0[2].replace(/,/g, ''), entries, 'row 0 holds every training token');
  const counts = (await rows.evaluateAll((trs) => trs.map((tr) => tr.children[2].textContent))).map((c) => +c.replace(/,/g, ''));
  for (let i = 1; i < counts.length; i++) assert.ok(counts[i] <= counts[i - 1], 'rows are nested: ' + counts);
  assert.ok(await rows.first().locator('.cbar .fill').count() === 1, 'a signed contribution bar');
  const summary = await out.locator('.summary').textContent();
  console.log('summary: ' + summary);
  const sel = await page.evaluate(() => window.spotlight.answer.tokens[2].layers.out.patterns.filter((r) => r.count > 0).pop());
  const lead = `After ${sel.suffix.replace(/\n/g, '↵').replace(/^ +| +$/g, (sp) => '␣'.repeat(sp.length))}, ${sel.count.toLocaleString('en')} training token`;
  assert.ok(summary.startsWith(lead), `the summary starts with the longest shared context: ${lead}`);
  assert.match(summary, /of this logit’s -?[\d.,]+/);
  assert.match(summary, /All [\d,]+ training tokens together gave/);

  // The passages: characters coloured on a diverging scale, with its legend.
  assert.ok(await out.locator('.passages .passage').count() >= 1);
  assert.equal(await out.locator('.colour-legend .swatch').count(), 5);
  const colours = await out.locator('.passages .passage-text span').evaluateAll((els) => els.map((e) => e.style.backgroundColor).filter(Boolean));
  assert.ok(colours.length >= 1, 'some passage characters are coloured');
  assert.ok(colours.every((c) => /^rgba\((31, 138, 91|192, 57, 43), /.test(c)), 'green or red: ' + colours.slice(0, 3));

  const head = await page.textContent('#details .tok-head');
  const firstCtx = await out.locator('.ctx').first().textContent();
  const dual = await out.locator('.stat', { hasText: 'dual check' }).textContent();
  const cf = await out.locator('.stat', { hasText: 'counterfactual' }).textContent();
  console.log('clicked token: ' + head.replace(/\s+/g, ' ').trim());
  console.log('layer out, first context: ' + firstCtx.replace(/\s+/g, ' ').trim());
  console.log('layer out: ' + dual.replace(/\s+/g, ' ').trim() + ' | ' + cf.replace(/\s+/g, ' ').trim());
  await shot('web-1280.png');
});

// layerOut reads layer out of the selected token from the answer the page shows.
const outOfSelected = () => page.evaluate(() => {
  const i = +document.querySelector('#text .tok.selected').dataset.i;
  return window.spotlight.answer.tokens[i].layers.out;
});

test('check by retraining: a progress bar, then the real probability beside the memory’s', async () => {
  const out = page.locator('#details .layer-card[data-layer=out]');
  await out.locator('button.cf-check').click();
  await page.waitForSelector('#details .layer-card[data-layer=out] .cf-progress');
  await page.waitForFunction(() => /retrained without them: /.test(
    document.querySelector('#details .layer-card[data-layer=out] .cf-retrain').textContent), null, { timeout: 120_000 });
  const cf = (await out.locator('.stat', { hasText: 'counterfactual' }).textContent()).replace(/\s+/g, ' ').trim();
  assert.match(cf, /final weights minus the listed tokens’ updates, rest of training unchanged/);
  assert.match(cf, /retrained without them: [\d.e-]+ \(Δlog p [−+-]?[\d.e-]+ real vs [−+-]?[\d.e-]+ predicted; \d+ steps from step \d+/);
  console.log('layer out: ' + cf);
});

test('exact influence: a progress bar, then the training tokens by influence with their contexts', async () => {
  const card = page.locator('#details .influence-card');
  await card.locator('button.inf-run').click();
  await page.waitForSelector('#details .influence-card .inf-progress');
  await page.waitForSelector('#details .influence-card .influence-list.supporting', { timeout: 300_000 });
  const summary = (await card.locator('.inf-summary').textContent()).replace(/\s+/g, ' ').trim();
  console.log('exact influence: ' + summary);
  assert.match(summary, /[\d,]+ training tokens scored in [\d.]+ s\. Removing the 10 of largest \|influence\| changes the loss by [−+-]?[\d.e-]+ to first order/);
  const items = card.locator('.influence-list.supporting .ctx');
  assert.equal(await items.count(), 10);
  assert.equal(await card.locator('.influence-list.opposing .ctx').count(), 10);
  const meta = await items.first().locator('.ctx-meta').textContent();
  const [, step, row, pos] = /step (\d+) · row (\d+) · pos (\d+)/.exec(meta).map(Number);
  assert.equal(await items.first().locator('mark.target').count(), 1);
  assert.ok((await items.first().locator('.ctx-before').textContent()).length >= 1, 'the first token shows its context');
  // The same question again is answered from the server's cache, with the tokens the page lists.
  const job = await page.evaluate(async () => {
    const i = +document.querySelector('#text .tok.selected').dataset.i;
    const a = window.spotlight.answer, t = a.tokens[i];
    const before = (a.prompt || '') + Array.from(a.text).slice(0, t.index).join('');
    const r = await fetch('/v1/influence', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: before + t.token, position: Array.from(before).length, top_k: 10 }) });
    return r.json();
  });
  assert.equal(job.status, 'done');
  assert.ok(job.result.cached);
  const s0 = job.result.supporting[0];
  assert.deepEqual([s0.step, s0.row, s0.pos], [step, row, pos]);
  assert.ok(s0.influence < 0, 'the first supporting token lowered the loss');

  await card.locator('button.inf-check').click();
  await page.waitForFunction(() => /retrained without them: /.test(document.querySelector('#details .influence-card .inf-retrain').textContent),
    null, { timeout: 300_000 });
  const check = (await card.locator('.inf-retrain').textContent()).replace(/\s+/g, ' ').trim();
  console.log('influence check: ' + check);
  assert.match(check, /Δloss [−+-]?[\d.e-]+ real vs [−+-]?[\d.e-]+ predicted by influence \(first order\) and [−+-]?[\d.e-]+ by the memory; \d+ steps from step \d+/);
  await card.scrollIntoViewIfNeeded();
  await shot('web-influence-1280.png');
});

test('a timeline bin limits the answer to its steps, and back', async () => {
  const full = await outOfSelected();
  // The bin with the most training tokens' contribution, so that the limited answer has some.
  const bins = full.timeline;
  const k = bins.reduce((b, x, i) => (Math.abs(x.contribution) > Math.abs(bins[b].contribution) ? i : b), 0);
  const { from_step: from, to_step: to } = bins[k];
  await page.click(`#details .layer-card[data-layer=out] svg.timeline rect.bin-hit[data-from="${from}"]`);
  await page.waitForFunction(([f, t]) => {
    const b = document.querySelector('#details .steps-banner');
    return b && !b.hidden && b.textContent.includes(`steps ${f}–${t}`);
  }, [from, to]);
  assert.match(await page.textContent('#text-steps'), new RegExp(`steps ${from}–${to}`), 'the text says it too');
  const part = await outOfSelected();
  const row0 = +(await page.locator('#details table.patterns tbody tr').first().locator('td').nth(2).textContent()).replace(/,/g, '');
  assert.equal(row0, part.patterns[0].count);
  assert.ok(row0 < full.patterns[0].count, `fewer training tokens in steps ${from}–${to}: ${row0} < ${full.patterns[0].count}`);
  assert.ok(part.top.every((e) => e.step >= from && e.step <= to), 'every listed token is from the bin');
  assert.equal(await page.locator('#details svg.timeline rect.bin-hit.active').count(), 1, 'the bin is marked');
  assert.equal(await page.locator('#details .stat .partial').count(), 1, 'the dual check says it covers those steps only');
  await page.click('#details .steps-banner button.all-steps');
  await page.waitForFunction(() => !document.querySelector('#details .steps-banner').textContent);
  assert.equal(await page.isHidden('#text-steps'), true);
  assert.equal((await outOfSelected()).patterns[0].count, full.patterns[0].count, 'all steps again');
});

test('ranking and grouping selectors', async () => {
  await page.selectOption('#rank-by', 'margin');
  await page.waitForFunction(() => /margin of/.test(document.querySelector('#details .layer-card[data-layer=out] h3').textContent));
  const m = await outOfSelected();
  assert.equal(m.objective, 'margin');
  assert.match(await page.textContent('#details .layer-card[data-layer=out] .summary'), /of this margin’s -?[\d.,]+ \(over “/);
  await page.selectOption('#group-by', 'token');
  await page.waitForFunction(() => /Top \d+ training tokens by margin$/.test(
    [...document.querySelectorAll('#details .layer-card[data-layer=out] h4')].pop().textContent));
  await page.selectOption('#rank-by', 'contribution');
  await page.selectOption('#group-by', 'pattern');
  await page.waitForFunction(() => /longest shared context first/.test(
    [...document.querySelectorAll('#details .layer-card[data-layer=out] h4')].pop().textContent));
  assert.equal((await outOfSelected()).objective, 'logit');
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

  // The loss chart's step labels stay apart.
  const boxes = await page.locator('#loss-chart text.xtick').evaluateAll((els) => els.map((e) => {
    const r = e.getBoundingClientRect();
    return [r.left, r.right, e.textContent];
  }));
  assert.ok(boxes.length >= 2, 'x ticks on the loss chart');
  for (let i = 1; i < boxes.length; i++) {
    assert.ok(boxes[i][0] > boxes[i - 1][1], `tick ${boxes[i][2]} clear of ${boxes[i - 1][2]}`);
  }

  // Once the server has loaded the new checkpoint the page serves it, and says so.
  const last = await page.evaluate(() => fetch('/v1/train').then((r) => r.json()));
  await page.waitForFunction((c) => new RegExp(`serving step ${c}\\b`).test(document.getElementById('model-info').textContent),
    last.committed, { timeout: 60_000 });
  await page.waitForSelector('#checkpoint-note[hidden]', { state: 'attached' });
  const hz = await page.evaluate(() => fetch('/healthz').then((r) => r.json()));
  assert.equal(hz.step, last.committed);
});

test('no script errors in the console', () => {
  // The deliberate bad prompt answers 400, which chromium logs as a failed resource.
  const real = consoleErrors.filter((e) => !/status of 400/.test(e));
  assert.deepEqual(real, []);
});
