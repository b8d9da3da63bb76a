// Spotlight's page: vanilla JS, no dependencies, talks only to the API it was served from.
// util.js, charts.js, evidence.js and influence.js load first and fill window.SL.
'use strict';

(function (SL) {
  const { h, num, signed, pct, showChar, quoted, count, bytes, ApiError, api } = SL;
  const $ = (id) => document.getElementById(id);

  function showError(err) {
    const code = err instanceof ApiError ? err.code : 'error';
    $('error-code').textContent = code + ':';
    $('error-message').textContent = err.message || String(err);
    $('error').hidden = false;
  }
  function clearError() { $('error').hidden = true; }

  // ---------- model info, the served step and the schedule ----------
  let modelLayers = [];
  let servedStep = null; // the checkpoint queries see now (GET /v1/model, /healthz, answers)
  let trainStepsEdited = false;
  $('train-steps').addEventListener('input', () => { trainStepsEdited = true; });

  async function loadModel() {
    let m;
    try {
      m = await api('GET', '/v1/model');
    } catch (e) {
      $('model-info').textContent = 'Model: unavailable (' + e.message + ')';
      return;
    }
    servedStep = m.step;
    const cfg = m.config || {};
    const parts = ['serving step ' + m.step];
    const dims = [];
    if (cfg.d) dims.push('d=' + cfg.d);
    if (cfg.blocks) dims.push(cfg.blocks + (cfg.blocks === 1 ? ' block' : ' blocks'));
    if (cfg.ctx) dims.push('context ' + cfg.ctx);
    if (dims.length) parts.push(dims.join(', '));
    if (m.vocabulary) parts.push('vocabulary ' + m.vocabulary.length);
    if (m.memory_bytes !== undefined) parts.push('memory ' + bytes(m.memory_bytes));
    const keys = m.layers && m.layers[0] && m.layers[0].entries;
    if (keys !== undefined) parts.push(count(keys) + ' training tokens per layer');
    $('model-info').textContent = 'Model: ' + parts.join(' · ');
    // A model stopped before its schedule is served as it is: say so, and offer the rest.
    const behind = cfg.steps && m.step < cfg.steps;
    $('schedule-note').hidden = !behind;
    if (behind) {
      const rest = cfg.steps - m.step;
      $('schedule-note').textContent = `Trained ${count(m.step)} of ${count(cfg.steps)} steps: this model stopped short of its schedule. ` +
        `Training can add the remaining ${count(rest)} below.`;
      if (!trainStepsEdited) $('train-steps').value = String(Math.min(rest, 100000));
    }
    const names = (m.layers || []).map((l) => l.name).filter(Boolean);
    if (names.length && names.join() !== modelLayers.join()) {
      modelLayers = names;
      $('layer-boxes').replaceChildren(...names.map((n) => h('label', { class: 'chk' },
        h('input', { type: 'checkbox', name: 'layer', value: n, checked: true }), ' ' + n)));
    }
  }
  function selectedLayers() {
    const boxes = [...document.querySelectorAll('#layer-boxes input[name=layer]')];
    const on = boxes.filter((b) => b.checked).map((b) => b.value);
    return on.length === boxes.length ? [] : on; // [] = all captured layers
  }

  // ---------- asking ----------
  let answer = null;
  let asked = null; // { mode, body } of the answer shown
  let selected = -1;
  let layer = 'out';

  function readRequest() {
    const int = (id) => parseInt($(id).value, 10);
    return {
      prompt: $('prompt').value,
      tokens: int('tokens'),
      top_k: int('top-k'),
      rank_by: $('rank-by').value,
      group_by: $('group-by').value,
      layers: selectedLayers(),
      temperature: parseFloat($('temperature').value) || 0,
      seed: int('seed') || 0,
      bins: int('bins') || 20,
    };
  }

  function run(mode) {
    clearError();
    const r = readRequest();
    if (!r.prompt) { showError(new ApiError('bad_request', 'type a prompt first')); return Promise.resolve(); }
    // POST /v1/attribute scores the text itself and takes no generation settings.
    const body = mode === 'attribute'
      ? { text: r.prompt, top_k: r.top_k, rank_by: r.rank_by, group_by: r.group_by, layers: r.layers, bins: r.bins }
      : r;
    return ask(mode, body, 0);
  }

  // rerun asks the shown question again with some options changed (the ranking, the
  // grouping, the step range), keeping the selected token and layer.
  function rerun(changes) {
    if (!asked) return Promise.resolve();
    const body = { ...asked.body, ...changes };
    if (!body.steps) delete body.steps;
    return ask(asked.mode, body, Math.max(0, selected));
  }

  async function ask(mode, body, keep) {
    setBusy(true);
    try {
      const a = await api('POST', mode === 'attribute' ? '/v1/attribute' : '/v1/generate', body);
      answer = a;
      asked = { mode, body };
      if (typeof a.step === 'number' && servedStep !== null && a.step > servedStep) loadModel();
      const names = layerOrder(Object.keys((a.tokens && a.tokens[0] && a.tokens[0].layers) || {}));
      if (!names.includes(layer)) layer = names[0] || 'out';
      selected = -1;
      renderText();
      if (a.tokens && a.tokens.length) select(Math.min(keep, a.tokens.length - 1), false);
      else $('details').replaceChildren(h('p', { class: 'muted' }, 'No tokens in the answer.'));
    } catch (e) {
      showError(e);
    } finally {
      setBusy(false);
    }
  }
  function setBusy(b) {
    $('busy').hidden = !b;
    for (const id of ['generate', 'attribute', 'rank-by', 'group-by']) $(id).disabled = b;
    document.body.classList.toggle('is-busy', b);
  }
  for (const id of ['rank-by', 'group-by']) {
    $(id).addEventListener('change', () => rerun({ rank_by: $('rank-by').value, group_by: $('group-by').value }));
  }

  // ---------- the generated text, highlighted by its best passages ----------
  function renderText() {
    const box = $('text');
    const kids = [];
    if (asked.mode === 'generate' && answer.prompt) kids.push(h('span', { class: 'prompt', title: 'your prompt' }, answer.prompt));
    const runes = Array.from(answer.text || '');
    const toks = answer.tokens || [];
    const best = toks.map((t) => SL.bestPassage(t, layer));
    const strongest = Math.max(0, ...best.map((p) => (p ? p.contribution : 0)));
    let pos = 0, group = null, alt = 0;
    const flush = () => { if (group) kids.push(group); group = null; };
    toks.forEach((t, i) => {
      const idx = typeof t.index === 'number' ? t.index : pos;
      if (idx > pos) { flush(); kids.push(h('span', { class: 'plain' }, runes.slice(pos, idx).join(''))); }
      const p = best[i];
      if (!group || !p || group.dataset.start !== String(p.start)) {
        flush();
        group = h('span', { class: 'pspan' + (p ? ' has alt' + (alt++ % 2) : ''), 'data-start': p ? p.start : '' });
      }
      const isNL = t.token === '\n';
      const sp = h('span', {
        class: 'tok' + (t.token === ' ' ? ' space' : '') + (isNL ? ' newline' : ''), role: 'button', tabindex: '-1', 'data-i': i,
        'aria-label': 'token ' + i + ' ' + JSON.stringify(t.token) + ', probability ' + num(t.prob, 3),
        title: JSON.stringify(t.token) + ' p=' + num(t.prob, 3) + (p ? ' · best passage ' + SL.shortSigned(p.contribution) : ''),
      }, isNL ? '↵' : t.token);
      const bg = p ? SL.tint(p.contribution, strongest, 0.55) : '';
      if (bg) sp.style.backgroundColor = bg;
      group.append(sp);
      if (isNL) group.append(h('br'));
      pos = Math.max(pos, idx + Array.from(t.token || '').length);
    });
    flush();
    if (pos < runes.length) kids.push(h('span', { class: 'plain' }, runes.slice(pos).join('')));
    box.replaceChildren(...kids);
    $('text-note').replaceChildren((asked.mode === 'attribute' ? 'Scored ' : 'Generated ') + toks.length +
      ' tokens with the model at step ' + answer.step + '. ', h('span', { class: 'tint-key' }, 'Green'),
      ` tint: how much the best training passage (layer ${layer}) gave to each character; an underline joins characters with the same best passage.`);
    stepsBanner($('text-steps'));
  }

  // spanPassage shows, under the text, the best passage of token i (hovered or selected).
  function spanPassage(i) {
    const box = $('span-passage');
    const t = answer && answer.tokens[i];
    const p = t && SL.bestPassage(t, layer);
    if (!p) { box.replaceChildren(h('p', { class: 'muted' }, 'No training passage supports this character in layer ' + layer + '.')); return; }
    const run = [...tokenSpans()[i].parentElement.querySelectorAll('.tok')];
    const text = run.map((sp) => answer.tokens[+sp.dataset.i].token).join('');
    box.replaceChildren(h('div', { class: 'passage-head' }, 'Best passage for ', h('code', { class: 'ctx-inline' }, SL.visible(text)),
      ` (layer ${layer})`), h('ol', { class: 'passage-list' }, SL.passageItem(p, SL.scaleOf([p]), t)));
  }

  function tokenSpans() { return [...document.querySelectorAll('#text .tok')]; }

  function select(i, focus) {
    const spans = tokenSpans();
    if (!spans.length) return;
    i = Math.max(0, Math.min(spans.length - 1, i));
    spans.forEach((sp, j) => {
      const on = j === i;
      sp.classList.toggle('selected', on);
      sp.setAttribute('tabindex', on ? '0' : '-1');
      sp.setAttribute('aria-pressed', on ? 'true' : 'false');
    });
    if (focus) spans[i].focus();
    if (i !== selected || focus === false) {
      selected = i;
      spanPassage(i);
      renderDetails(answer.tokens[i]);
    }
  }

  $('text').addEventListener('click', (ev) => {
    const sp = ev.target.closest('.tok');
    if (sp) select(+sp.dataset.i, true);
  });
  $('text').addEventListener('mouseover', (ev) => {
    const sp = ev.target.closest('.tok');
    if (sp) spanPassage(+sp.dataset.i);
  });
  $('text').addEventListener('mouseleave', () => { if (selected >= 0) spanPassage(selected); });
  $('text').addEventListener('keydown', (ev) => {
    const sp = ev.target.closest('.tok');
    if (!sp) return;
    const i = +sp.dataset.i;
    const last = tokenSpans().length - 1;
    const moves = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: last };
    if (ev.key in moves) {
      ev.preventDefault();
      select(moves[ev.key], true);
    } else if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      select(i, true);
      $('details-panel').scrollIntoView({ block: 'start', behavior: 'smooth' });
    }
  });

  // stepsBanner says when the answer is limited to a range of training steps, with the way back.
  function stepsBanner(el) {
    const st = asked && asked.body.steps;
    el.hidden = !st;
    if (!st) { el.replaceChildren(); return; }
    el.replaceChildren(h('span', {}, `Answer limited to training steps ${st[0]}–${st[1]} (a timeline bin): every number counts those steps only. `),
      h('button', { type: 'button', class: 'all-steps', onclick: () => rerun({ steps: null }) }, 'Show all steps'));
  }

  // ---------- details of one token ----------
  function layerOrder(names) {
    const key = (n) => {
      if (n === 'out') return [1e9, 0];
      const m = /^block(\d+)\.ff(\d+)$/.exec(n);
      return m ? [+m[1], +m[2]] : [1e8, 0];
    };
    return names.slice().sort((a, b) => {
      const ka = key(a), kb = key(b);
      return ka[0] - kb[0] || ka[1] - kb[1] || a.localeCompare(b);
    }).reverse(); // out first, then the deepest block
  }

  function renderDetails(t) {
    const layers = t.layers || {};
    const names = layerOrder(Object.keys(layers));
    const head = h('div', { class: 'tok-head' },
      h('span', { class: 'big-char', 'aria-hidden': 'true' }, showChar(t.token)),
      h('div', {},
        h('div', {}, h('strong', {}, 'Token ' + t.index), ' ', h('code', {}, JSON.stringify(t.token)),
          ' · probability ', h('strong', { class: 'prob' }, num(t.prob, 3))),
        verbatimView(t.verbatim)));
    const tabs = h('div', { class: 'layer-tabs', role: 'tablist', 'aria-label': 'layer' }, names.map((n) => h('button', {
      type: 'button', role: 'tab', 'aria-selected': n === layer ? 'true' : 'false', class: n === layer ? 'on' : '', 'data-layer': n,
      onclick: () => { layer = n; renderText(); select(selected, false); },
    }, n)));
    const banner = h('div', { class: 'steps-banner' });
    stepsBanner(banner);
    const card = layers[layer] ? layerCard(t, layer, layers[layer]) : h('p', { class: 'muted' }, 'No layers in the answer.');
    const ctx = Array.from(queryContext(t));
    $('details').replaceChildren(head, tabs, banner, card, SL.influenceView(ctx.join('') + t.token, ctx.length));
  }

  function verbatimView(v) {
    if (!v || !v.length) return h('div', { class: 'verbatim muted' }, 'Verbatim: the context’s last character never occurs in the corpus.');
    const where = (v.offsets || []).slice(0, 5).join(', ');
    return h('div', { class: 'verbatim' }, 'Verbatim: the last ', h('strong', {}, v.length), ' characters ',
      h('code', { class: 'ctx-inline' }, v.text), ' occur ', h('strong', {}, v.count), '× in the corpus',
      where ? ' (at ' + where + (v.count > 5 ? ', …' : '') + ')' : '', '.');
  }

  const dualOK = (dc) => dc && Math.abs(dc.abs_err) <= 1e-3 * Math.max(1, Math.abs(dc.primal));
  const rankName = { contribution: 'contribution', margin: 'margin', logp: 'log p', attention: 'attention |α|' };

  // queryContext is what the model saw before token t: the prompt and the text up to it.
  function queryContext(t) {
    const before = Array.from(answer.text || '').slice(0, t.index).join('');
    return (asked.mode === 'generate' ? answer.prompt || '' : '') + before;
  }

  function layerCard(t, name, la) {
    const top = la.top || [];
    const dc = la.dual_check || {};
    const limited = !!asked.body.steps;
    const stats = h('dl', { class: 'stats' },
      stat('W₀ term', num(la.w0_term), 'the initial weights’ share of ' + (name === 'out' ? 'the logit' : 'the projected output')),
      stat('bias term', num(la.bias_term), 'the bias’s share'),
      stat('Σ positive', signed(la.positive_total), 'sum of all positive contributions'),
      stat('Σ negative', signed(la.negative_total), 'sum of all negative contributions'),
      stat('top-k share', pct(la.top_share), 'Σ|contribution| of the listed tokens over all'),
      stat('dual check', h('span', { class: limited ? 'partial' : dualOK(dc) ? 'ok' : 'bad' },
        'primal ' + num(dc.primal) + ' · dual ' + num(dc.dual) + ' · |err| ' + num(dc.abs_err, 1) +
        (limited ? ' (steps limited: the dual sums those steps only)' : '')),
      'the layer’s real output vs. the memory’s reconstruction'),
      la.counterfactual_prob !== undefined && la.counterfactual_prob !== null
        ? stat('counterfactual p', h('span', {}, num(t.prob, 3) + ' → ', h('strong', {}, num(la.counterfactual_prob, 3)),
          h('span', { class: 'cf-note' }, ' final weights minus the listed tokens’ updates, rest of training unchanged — not a retraining'),
          top.length ? retrainView(t, top) : null),
        'probability of this token with the listed training tokens’ updates taken out of the final weights')
        : null);

    const ctx = queryContext(t);
    const maxA = Math.max(1e-30, ...top.map((e) => Math.abs(e.attention)));
    const maxC = Math.max(1e-30, ...top.map((e) => Math.abs(e.contribution)));
    const list = h('ol', { class: 'contexts' }, top.map((e, k) => h('li', { class: 'ctx' },
      h('div', { class: 'ctx-meta' }, '#' + (k + 1) + ' · shares ' + SL.sharedChars(e.context, ctx) + ' chars · step ' + e.step +
        ' · row ' + e.row + ' · pos ' + e.pos + ' · offset ' + e.offset),
      h('div', { class: 'ctx-text', title: 'training context; the highlighted character is the target it was trained to predict' },
        h('span', { class: 'ctx-before' }, e.context), h('mark', { class: 'target' + (/\s/.test(e.target) ? ' ws' : '') }, showChar(e.target))),
      h('div', { class: 'bars' },
        bar('attention', 'α', e.attention, Math.abs(e.attention) / maxA, false),
        bar('contribution', 'contrib.', e.contribution, Math.abs(e.contribution) / maxC, true)))));

    const plotLink = asked.mode === 'generate' ? plotURL(t, name) : null;
    const objective = la.objective === 'margin' ? `margin of ${quoted(t.token)} over ${quoted(la.runner_up || '?')}`
      : la.objective === 'logp' ? `log p of ${quoted(t.token)}` : `logit of ${quoted(t.token)}`;
    return h('section', { class: 'layer-card', id: 'layer-' + name.replace(/[^a-zA-Z0-9_-]/g, '-'), 'data-layer': name },
      h('h3', {}, 'Layer ', h('code', {}, name), h('span', { class: 'objective' }, 'contributions to the ' + objective),
        la.first_order ? h('span', { class: 'badge', title: 'contributions are a first-order projection on the logit gradient' }, 'first-order') : null),
      SL.patternSentence(la, t, name),
      h('h4', {}, 'Training tokens by the context they shared'),
      SL.patternTable(la, t),
      h('h4', {}, 'Training passages that contributed most'),
      SL.passagesView(la, t),
      h('h4', {}, 'The layer’s numbers'),
      stats,
      h('div', { class: 'timeline-wrap' },
        h('h4', {}, 'Over training time'),
        la.timeline && la.timeline.length
          ? SL.timelineSVG(la.timeline, chartWidth(), (from, to) => rerun({ steps: [from, to] }), asked.body.steps || null,
            la.objective === 'margin' ? 'margin' : la.objective === 'logp' ? 'log p' : 'logit')
          : h('p', { class: 'muted' }, 'No timeline.'),
        plotLink ? h('p', { class: 'plot-links' }, 'Download: ', h('a', { href: plotLink, class: 'plot-png' }, 'PNG'), ' · ',
          h('a', { href: plotLink.replace('timeline.png', 'timeline.svg') }, 'SVG')) : null),
      h('h4', {}, 'Top ' + top.length + ' training tokens by ' + (rankName[asked.body.rank_by] || 'rank') +
        (asked.body.group_by === 'token' ? '' : ', longest shared context first')),
      top.length ? list : h('p', { class: 'muted' }, 'No training tokens.'));
  }

  function plotURL(t, layerName) {
    const r = asked.body;
    const q = new URLSearchParams({
      prompt: r.prompt, token: String(answer.tokens.indexOf(t)), tokens: String(answer.tokens.length),
      layer: layerName, bins: String(r.bins), temperature: String(r.temperature), seed: String(r.seed),
    });
    return '/v1/plots/timeline.png?' + q.toString();
  }

  // retrainView is the "check by retraining" button: a server job replays training without
  // the listed tokens (POST /v1/counterfactual), polled until done, with a progress bar.
  function retrainView(t, top) {
    const out = h('span', { class: 'cf-retrain' });
    const btn = h('button', { type: 'button', class: 'cf-check', title: 'replay training from the nearest kept checkpoint without the listed tokens' },
      'check by retraining');
    const ctx = Array.from(queryContext(t));
    btn.onclick = async () => {
      btn.disabled = true;
      const bar = h('progress', { class: 'cf-progress', max: 1, value: 0 });
      const note = h('span', { class: 'cf-status' }, 'retraining…');
      out.replaceChildren(bar, ' ', note);
      try {
        let job = await api('POST', '/v1/counterfactual', {
          text: ctx.join('') + t.token, position: ctx.length,
          tokens: top.map((e) => ({ step: e.step, row: e.row, pos: e.pos })),
        });
        while (job.status === 'queued' || job.status === 'running') {
          bar.value = job.progress;
          note.textContent = 'retraining… ' + pct(job.progress);
          await new Promise((r) => setTimeout(r, 300));
          job = await api('GET', '/v1/counterfactual/' + encodeURIComponent(job.id));
        }
        if (job.status !== 'done') throw new Error('retrain ' + job.status + (job.error ? ': ' + job.error : ''));
        const r = job.result;
        bar.value = 1;
        out.replaceChildren(h('span', { class: 'cf-result' },
          'retrained without them: ', h('strong', {}, num(r.real_prob, 3)),
          ' (Δlog p ' + signed(r.real_logp - r.logp) + ' real vs ' + signed(r.predicted_logp - r.logp) + ' predicted; ' +
          r.replayed_steps + ' steps from step ' + r.from_step + ', ' + num(r.seconds, 2) + ' s)'));
      } catch (e) {
        out.replaceChildren(h('span', { class: 'cf-error' }, e.message));
        btn.disabled = false;
        out.append(' ', btn);
      }
    };
    out.append(btn);
    return out;
  }

  function stat(label, value, title) {
    return h('div', { class: 'stat', title }, h('dt', {}, label), h('dd', {}, value));
  }

  function bar(kind, label, value, frac, diverging) {
    frac = Math.max(0, Math.min(1, frac || 0));
    const fill = h('span', { class: 'fill ' + (value < 0 ? 'neg' : 'pos') });
    const track = h('span', { class: 'track' + (diverging ? ' diverging' : '') }, fill);
    if (diverging) {
      fill.style.width = (50 * frac) + '%';
      if (value < 0) fill.style.right = '50%'; else fill.style.left = '50%';
    } else {
      fill.style.width = (100 * frac) + '%';
    }
    return h('div', { class: 'bar ' + kind, title: kind + ' ' + value },
      h('span', { class: 'bar-label' }, label), track, h('span', { class: 'bar-value' }, signed(value)));
  }

  // chartWidth is the pixel width the charts get, so that their text keeps its size.
  function chartWidth() {
    const w = $('details').clientWidth || 640;
    return Math.max(300, Math.min(760, Math.floor(w)));
  }

  // ---------- live training and the checkpoint being loaded ----------
  let trainTimer = null;
  let wasRunning = false;
  async function pollTrain() {
    clearTimeout(trainTimer);
    let t;
    try {
      t = await api('GET', '/v1/train');
    } catch (e) {
      if (e.status === 404 || e.status === 405) { $('train-panel').hidden = true; return; }
      $('train-status').textContent = 'Training status unavailable: ' + e.message;
      trainTimer = setTimeout(pollTrain, 5000);
      return;
    }
    $('train-panel').hidden = false;
    const running = !!t.running;
    const step = t.step ?? 0;
    const total = t.until || step;
    const frac = running && total ? Math.min(1, step / total) : 1;
    $('train-bar').style.width = (100 * frac) + '%';
    $('train-progress').setAttribute('aria-valuenow', String(Math.round(100 * frac)));
    const pts = (t.losses || []).map((p) => [p.step, p.loss]).filter((p) => Number.isFinite(p[1]));
    const recent = pts.slice(-1)[0];
    const bits = [(running ? 'Training: step ' : 'Idle at step ') + step + (running ? ' of ' + total : '')];
    if (t.loss) bits.push('train loss (last step) ' + num(t.loss, 3));
    else if (recent) bits.push('train loss (mean of the steps to ' + recent[0] + ') ' + num(recent[1], 3));
    if (t.eval_loss !== undefined && t.eval_loss !== null) bits.push('held-out loss ' + num(t.eval_loss, 3));
    if (running && t.tokens_per_sec) bits.push(Math.round(t.tokens_per_sec) + ' tok/s');
    if (t.error) bits.push('stopped: ' + t.error);
    $('train-status').textContent = bits.join(' · ');
    $('loss-chart').replaceChildren(pts.length ? SL.lossSVG(pts, running ? total : 0)
      : h('p', { class: 'muted small' }, 'The loss curve draws while a run goes on.'));
    $('train-panel').classList.toggle('running', running);
    // Queries see a committed step only once the server has loaded it: until /healthz moves
    // there, say which step is served and that a newer one is on its way.
    let loading = false;
    if (servedStep !== null && t.committed > servedStep) {
      try {
        const hz = await api('GET', '/healthz');
        if (hz.step !== servedStep) await loadModel();
      } catch (_) { /* the next poll tries again */ }
      loading = t.committed > servedStep;
    }
    const note = $('checkpoint-note');
    note.hidden = !loading;
    if (loading) note.textContent = `Queries see step ${servedStep}; step ${t.committed} is committed and loading…`;
    if (wasRunning && !running) loadModel();
    wasRunning = running;
    trainTimer = setTimeout(pollTrain, running || loading ? 1000 : 5000);
  }
  $('train-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      await api('POST', '/v1/train', { steps: parseInt($('train-steps').value, 10) });
      trainStepsEdited = false;
    } catch (e) { showError(e); }
    pollTrain();
  });

  // Redraw the charts at the new width when the window changes size.
  let resizeTimer = null;
  let lastWidth = window.innerWidth;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      if (answer && selected >= 0 && answer.tokens[selected]) renderDetails(answer.tokens[selected]);
    }, 150);
  });

  // ---------- wiring ----------
  $('gen-form').addEventListener('submit', (ev) => { ev.preventDefault(); run('generate'); });
  $('attribute').addEventListener('click', () => run('attribute'));
  $('error-close').addEventListener('click', clearError);
  $('prompt').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run('generate'); }
  });

  loadModel();
  pollTrain();
  // Exposed for tests and the console.
  window.spotlight = { run, rerun, select, get answer() { return answer; }, get servedStep() { return servedStep; } };
})(window.SL);
