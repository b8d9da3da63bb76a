// Spotlight's page: vanilla JS, no dependencies, talks only to the API it was served from.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const SVGNS = 'http://www.w3.org/2000/svg';

  // h builds an HTML element: h('div', {class: 'x', onclick: f}, child, 'text', ...).
  // Text always goes in as text nodes, never as markup (the corpus is untrusted).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  // ---------- formatting ----------
  function num(x, digits) {
    if (x === undefined || x === null || Number.isNaN(x)) return '—';
    if (x === 0) return '0';
    const a = Math.abs(x);
    if (a >= 1e5 || a < 1e-3) return x.toExponential(digits === undefined ? 2 : digits);
    return x.toFixed(digits === undefined ? (a >= 100 ? 1 : a >= 1 ? 3 : 4) : digits);
  }
  const signed = (x) => (x > 0 ? '+' : '') + num(x);
  const pct = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : (100 * x).toFixed(1) + '%');
  function showChar(c) {
    if (c === ' ') return '␣';
    if (c === '\n') return '↵';
    if (c === '\t') return '⇥';
    return c;
  }
  function bytes(n) {
    if (typeof n !== 'number') return String(n);
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + ' ' + u[i];
  }

  // ---------- errors ----------
  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
  }
  function showError(err) {
    const code = err instanceof ApiError ? err.code : 'error';
    $('error-code').textContent = code + ':';
    $('error-message').textContent = err.message || String(err);
    $('error').hidden = false;
  }
  function clearError() { $('error').hidden = true; }

  // A server started with --token answers 401 until the page sends it; ask once per tab.
  const tokenKey = 'spotlight-token';
  async function api(method, path, body, retried) {
    const opts = { method, headers: { Accept: 'application/json' } };
    const token = sessionStorage.getItem(tokenKey);
    if (token) opts.headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiError('network', 'cannot reach the server: ' + e.message, 0);
    }
    if (res.status === 401 && !retried) {
      const t = window.prompt('This Spotlight server needs its access token (spotlight serve --token):');
      if (t) {
        sessionStorage.setItem(tokenKey, t.trim());
        return api(method, path, body, true);
      }
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!res.ok) {
      if (data && data.error) {
        throw new ApiError(data.error.code || String(res.status), data.error.message || text, res.status);
      }
      const msg = (data && data.message) || text.trim() || res.statusText;
      throw new ApiError(String(res.status), msg, res.status);
    }
    if (data === null && text) throw new ApiError('bad_response', 'the server did not answer JSON', res.status);
    return data;
  }

  // ---------- model info and layers ----------
  let modelLayers = [];
  function layerNames(m) {
    const ls = m.layers || (m.config && (m.config.layers || m.config.Layers)) || [];
    return ls.map((l) => (typeof l === 'string' ? l : l.name)).filter(Boolean);
  }
  async function loadModel() {
    let m;
    try {
      m = await api('GET', '/v1/model');
    } catch (e) {
      $('model-info').textContent = 'Model: unavailable (' + e.message + ')';
      return;
    }
    const parts = [];
    const step = m.step ?? (m.training && m.training.step) ?? (m.progress && m.progress.step);
    if (step !== undefined) parts.push('step ' + step);
    const cfg = m.config || {};
    const dims = [];
    if (cfg.d || cfg.D) dims.push('d=' + (cfg.d || cfg.D));
    const nb = cfg.blocks || cfg.Blocks;
    if (nb) dims.push(nb + (nb === 1 ? ' block' : ' blocks'));
    if (cfg.ctx || cfg.Ctx) dims.push('context ' + (cfg.ctx || cfg.Ctx));
    if (dims.length) parts.push(dims.join(', '));
    const vocab = m.vocabulary ?? m.vocab;
    if (vocab !== undefined) parts.push('vocabulary ' + (typeof vocab === 'number' ? vocab : vocab.length));
    const mem = m.memory_bytes ?? (m.memory && (m.memory.bytes ?? m.memory.size_bytes));
    if (mem !== undefined) parts.push('memory ' + bytes(mem));
    const keys = (m.layers && m.layers[0] && m.layers[0].entries) ?? (m.memory && (m.memory.tokens ?? m.memory.keys));
    if (keys !== undefined) parts.push(keys.toLocaleString('en') + ' training tokens per layer');
    $('model-info').textContent = parts.length ? 'Model: ' + parts.join(' · ') : 'Model loaded';
    const names = layerNames(m);
    if (names.length && names.join() !== modelLayers.join()) {
      modelLayers = names;
      const box = $('layer-boxes');
      box.replaceChildren(...names.map((n) => h('label', { class: 'chk' },
        h('input', { type: 'checkbox', name: 'layer', value: n, checked: true }), ' ' + n)));
    }
  }
  function selectedLayers() {
    const boxes = [...document.querySelectorAll('#layer-boxes input[name=layer]')];
    const on = boxes.filter((b) => b.checked).map((b) => b.value);
    return on.length === boxes.length ? [] : on; // [] = all captured layers
  }

  // ---------- generation ----------
  let answer = null;
  let answerMode = 'generate';
  let lastRequest = null;
  let selected = -1;

  function readRequest() {
    const int = (id) => parseInt($(id).value, 10);
    return {
      prompt: $('prompt').value,
      tokens: int('tokens'),
      top_k: int('top-k'),
      rank_by: $('rank-by').value,
      layers: selectedLayers(),
      temperature: parseFloat($('temperature').value) || 0,
      seed: int('seed') || 0,
      bins: int('bins') || 20,
    };
  }

  async function run(mode) {
    clearError();
    const req = readRequest();
    if (!req.prompt) { showError(new ApiError('bad_request', 'type a prompt first')); return; }
    // POST /v1/attribute scores the text itself and takes no generation settings.
    const body = mode === 'attribute'
      ? { text: req.prompt, top_k: req.top_k, rank_by: req.rank_by, layers: req.layers, bins: req.bins }
      : req;
    setBusy(true);
    try {
      const a = await api('POST', mode === 'attribute' ? '/v1/attribute' : '/v1/generate', body);
      answer = a;
      answerMode = mode;
      lastRequest = req;
      renderText();
      if (a.tokens && a.tokens.length) select(0, false);
      else $('details').replaceChildren(h('p', { class: 'muted' }, 'No tokens in the answer.'));
    } catch (e) {
      showError(e);
    } finally {
      setBusy(false);
    }
  }
  function setBusy(b) {
    $('busy').hidden = !b;
    $('generate').disabled = b;
    $('attribute').disabled = b;
    document.body.classList.toggle('is-busy', b);
  }

  function renderText() {
    const box = $('text');
    const kids = [];
    if (answerMode === 'generate' && answer.prompt) kids.push(h('span', { class: 'prompt', title: 'your prompt' }, answer.prompt));
    const runes = Array.from(answer.text || '');
    let pos = 0;
    (answer.tokens || []).forEach((t, i) => {
      const idx = typeof t.index === 'number' ? t.index : pos;
      if (idx > pos) kids.push(h('span', { class: 'plain' }, runes.slice(pos, idx).join('')));
      const isNL = t.token === '\n';
      const cls = 'tok' + (t.token === ' ' ? ' space' : '') + (isNL ? ' newline' : '');
      kids.push(h('span', {
        class: cls, role: 'button', tabindex: '-1', 'data-i': i,
        'aria-label': 'token ' + i + ' ' + JSON.stringify(t.token) + ', probability ' + num(t.prob, 3),
        title: JSON.stringify(t.token) + ' p=' + num(t.prob, 3),
      }, isNL ? '↵' : t.token));
      if (isNL) kids.push(h('br'));
      pos = Math.max(pos, idx + Array.from(t.token || '').length);
    });
    if (pos < runes.length) kids.push(h('span', { class: 'plain' }, runes.slice(pos).join('')));
    box.replaceChildren(...kids);
    const meta = h('p', { class: 'muted step-note' }, (answerMode === 'attribute' ? 'Scored ' : 'Generated ') +
      (answer.tokens || []).length + ' tokens with the model at step ' + answer.step + '.');
    box.append(meta);
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
      renderDetails(answer.tokens[i]);
    }
  }

  $('text').addEventListener('click', (ev) => {
    const sp = ev.target.closest('.tok');
    if (sp) select(+sp.dataset.i, true);
  });
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
    const cards = names.map((n) => layerCard(t, n, layers[n]));
    if (!cards.length) cards.push(h('p', { class: 'muted' }, 'No layers in the answer.'));
    $('details').replaceChildren(head, h('nav', { class: 'layer-nav', 'aria-label': 'layers' },
      names.map((n) => h('a', { href: '#layer-' + cssId(n) }, n))), ...cards);
  }
  const cssId = (n) => n.replace(/[^a-zA-Z0-9_-]/g, '-');

  function verbatimView(v) {
    if (!v || !v.length) return h('div', { class: 'verbatim muted' }, 'Verbatim: the context’s last character never occurs in the corpus.');
    const where = (v.offsets || []).slice(0, 5).join(', ');
    return h('div', { class: 'verbatim' }, 'Verbatim: the last ', h('strong', {}, v.length), ' characters ',
      h('code', { class: 'ctx-inline' }, v.text), ' occur ', h('strong', {}, v.count), '× in the corpus',
      where ? ' (at ' + where + (v.count > 5 ? ', …' : '') + ')' : '', '.');
  }

  function dualOK(dc) {
    return dc && Math.abs(dc.abs_err) <= 1e-3 * Math.max(1, Math.abs(dc.primal));
  }

  function layerCard(t, name, la) {
    const top = la.top || [];
    const dc = la.dual_check || {};
    const stats = h('dl', { class: 'stats' },
      stat('W₀ term', num(la.w0_term), 'the initial weights’ share of ' + (name === 'out' ? 'the logit' : 'the projected output')),
      stat('bias term', num(la.bias_term)),
      stat('Σ positive', signed(la.positive_total), 'sum of all positive contributions'),
      stat('Σ negative', signed(la.negative_total), 'sum of all negative contributions'),
      stat('top-k share', pct(la.top_share), 'Σ|contribution| of the listed tokens over all'),
      stat('dual check', h('span', { class: dualOK(dc) ? 'ok' : 'bad' },
        'primal ' + num(dc.primal) + ' · dual ' + num(dc.dual) + ' · |err| ' + num(dc.abs_err, 1)),
      'the layer’s real output vs. the memory’s reconstruction'),
      la.counterfactual_prob !== undefined && la.counterfactual_prob !== null
        ? stat('counterfactual', h('span', {}, 'p ' + num(t.prob, 3) + ' → ', h('strong', {}, num(la.counterfactual_prob, 3))),
          'probability of this token with the top-k contributions removed from the logits')
        : null);

    const maxA = Math.max(1e-30, ...top.map((e) => Math.abs(e.attention)));
    const maxC = Math.max(1e-30, ...top.map((e) => Math.abs(e.contribution)));
    const list = h('ol', { class: 'contexts' }, top.map((e, k) => h('li', { class: 'ctx' },
      h('div', { class: 'ctx-meta' }, '#' + (k + 1) + ' · step ' + e.step + ' · row ' + e.row + ' · pos ' + e.pos + ' · offset ' + e.offset),
      h('div', { class: 'ctx-text', title: 'training context; the highlighted character is the target it was trained to predict' },
        h('span', { class: 'ctx-before' }, e.context), h('mark', { class: 'target' + (/\s/.test(e.target) ? ' ws' : '') }, showChar(e.target))),
      h('div', { class: 'bars' },
        bar('attention', 'α', e.attention, Math.abs(e.attention) / maxA, false),
        bar('contribution', 'contrib.', e.contribution, Math.abs(e.contribution) / maxC, true)))));

    const plotLink = answerMode === 'generate' && lastRequest ? plotURL(t, name) : null;
    return h('section', { class: 'layer-card', id: 'layer-' + cssId(name), 'data-layer': name },
      h('h3', {}, 'Layer ', h('code', {}, name),
        la.first_order ? h('span', { class: 'badge', title: 'contributions are a first-order projection on the logit gradient' }, 'first-order') : null),
      stats,
      h('div', { class: 'timeline-wrap' },
        h('h4', {}, 'Over training time'),
        la.timeline && la.timeline.length ? timelineSVG(la.timeline) : h('p', { class: 'muted' }, 'No timeline.'),
        plotLink ? h('p', { class: 'plot-links' }, 'Download: ', h('a', { href: plotLink, class: 'plot-png' }, 'PNG'), ' · ',
          h('a', { href: plotLink.replace('timeline.png', 'timeline.svg') }, 'SVG')) : null),
      h('h4', {}, 'Top ' + top.length + ' training tokens by ' + (lastRequest ? lastRequest.rank_by : 'rank')),
      top.length ? list : h('p', { class: 'muted' }, 'No training tokens.'));
  }

  function plotURL(t, layer) {
    const r = lastRequest;
    const q = new URLSearchParams({
      prompt: r.prompt, token: String(answer.tokens.indexOf(t)), tokens: String(answer.tokens.length),
      layer, bins: String(r.bins), temperature: String(r.temperature), seed: String(r.seed),
    });
    return '/v1/plots/timeline.png?' + q.toString();
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

  // ---------- charts ----------
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo;
    const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
    const err = (span / n) / step0;
    const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) ticks.push(Math.abs(v) < 1e-12 * step ? 0 : v);
    return ticks;
  }
  function tickText(v) {
    const a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + 'G';
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + 'k';
    if (a < 1e-3) return v.toExponential(0);
    return String(+v.toPrecision(3));
  }

  // panel draws one chart panel (axes, ticks, labels, series) into g, in a W×H box.
  // With keepZero false (the loss curve) the y range hugs the data instead of including 0.
  function panel(g, box, xr, series, ylabel, xlabel, keepZero = true) {
    const { x0, y0, w, hgt } = box;
    const ys = series.flatMap((se) => se.pts.map((p) => p[1]));
    let ylo = Math.min(...ys, ...(keepZero ? [0] : []));
    let yhi = Math.max(...ys, ...(keepZero ? [0] : []));
    if (yhi === ylo) { yhi += 1; ylo -= 1; }
    const pad = 0.08 * (yhi - ylo);
    yhi += 2.5 * pad; if (ylo < 0 || !keepZero) ylo -= pad; // headroom for the legend
    const X = (v) => x0 + (v - xr[0]) / (xr[1] - xr[0]) * w;
    const Y = (v) => y0 + hgt - (v - ylo) / (yhi - ylo) * hgt;
    g.append(s('rect', { x: x0, y: y0, width: w, height: hgt, class: 'plot-bg' }));
    for (const v of niceTicks(ylo, yhi, 4)) {
      g.append(s('line', { x1: x0, x2: x0 + w, y1: Y(v), y2: Y(v), class: v === 0 ? 'zero' : 'grid' }));
      g.append(s('text', { x: x0 - 4, y: Y(v) + 3, class: 'tick', 'text-anchor': 'end' }, tickText(v)));
    }
    for (const v of niceTicks(xr[0], xr[1], 6)) {
      g.append(s('line', { x1: X(v), x2: X(v), y1: y0 + hgt, y2: y0 + hgt + 4, class: 'axis' }));
      g.append(s('text', { x: X(v), y: y0 + hgt + 14, class: 'tick', 'text-anchor': 'middle' }, tickText(v)));
    }
    g.append(s('line', { x1: x0, x2: x0, y1: y0, y2: y0 + hgt, class: 'axis' }));
    g.append(s('line', { x1: x0, x2: x0 + w, y1: y0 + hgt, y2: y0 + hgt, class: 'axis' }));
    for (const se of series) {
      const d = se.pts.map((p, i) => (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1)).join(' ');
      g.append(s('path', { d, class: 'series ' + se.cls }, s('title', {}, se.name)));
    }
    g.append(s('text', { class: 'axis-label', transform: `translate(${x0 - 46} ${y0 + hgt / 2}) rotate(-90)`, 'text-anchor': 'middle' }, ylabel));
    if (xlabel) g.append(s('text', { class: 'axis-label', x: x0 + w / 2, y: y0 + hgt + 30, 'text-anchor': 'middle' }, xlabel));
    // legend
    let lx = x0 + w - 4;
    for (const se of series.slice().reverse()) {
      const t = s('text', { x: lx, y: y0 + 12, class: 'legend', 'text-anchor': 'end' }, se.name);
      g.append(t);
      lx -= 8 + se.name.length * 6.2;
      g.append(s('line', { x1: lx - 14, x2: lx - 2, y1: y0 + 8, y2: y0 + 8, class: 'series ' + se.cls }));
      lx -= 22;
    }
  }

  // A bin covers its steps from_step..to_step inclusive: on the axis, from_step−½ to to_step+½,
  // so neighbouring bins meet and each value is a flat segment.
  function stepPts(bins, f) {
    const pts = [];
    for (const b of bins) pts.push([b.from_step - 0.5, f(b)], [b.to_step + 0.5, f(b)]);
    return pts;
  }

  // chartWidth is the pixel width the charts get, so that their text keeps its size.
  function chartWidth() {
    const w = $('details').clientWidth || 640;
    return Math.max(300, Math.min(760, Math.floor(w)));
  }

  function timelineSVG(bins) {
    const W = chartWidth(), ph = W < 480 ? 100 : 120, H = 2 * ph + 110;
    const box1 = { x0: 62, y0: 10, w: W - 74, hgt: ph };
    const box2 = { x0: 62, y0: ph + 60, w: W - 74, hgt: ph };
    const xr = [Math.min(...bins.map((b) => b.from_step)) - 0.5, Math.max(...bins.map((b) => b.to_step)) + 0.5];
    const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img',
      'aria-label': 'Attention mass and contribution over training steps' });
    svg.append(s('title', {}, 'Attention mass (Σα, dimensionless) and contribution (logit units) over training steps'));
    const g1 = s('g', { class: 'panel-attention' });
    panel(g1, box1, xr, [
      { name: 'Σ|α|', cls: 'abs-attention', pts: stepPts(bins, (b) => b.abs_attention) },
      { name: 'Σα', cls: 'attention', pts: stepPts(bins, (b) => b.attention) },
    ], 'attention mass Σα', null);
    const g2 = s('g', { class: 'panel-contribution' });
    panel(g2, box2, xr, [
      { name: 'Σ contribution', cls: 'contribution', pts: stepPts(bins, (b) => b.contribution) },
    ], 'contribution (logit)', 'training step');
    svg.append(g1, g2);
    svg.append(s('text', { x: 4, y: ph + 40, class: 'unit-note' }, 'Σα: dimensionless · contribution: logit units · x: training step'));
    return svg;
  }

  function lossSVG(points, total) {
    const W = 320, H = 150;
    const svg = s('svg', { class: 'loss', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'training loss over steps' });
    if (!points.length) return svg;
    const xr = [Math.min(...points.map((p) => p[0])), Math.max(total || 0, ...points.map((p) => p[0]))];
    if (xr[1] === xr[0]) xr[1] += 1;
    const g = s('g');
    panel(g, { x0: 52, y0: 6, w: W - 62, hgt: H - 46 }, xr, [{ name: 'loss', cls: 'loss-line', pts: points }], 'loss (nats)', 'training step', false);
    svg.append(g);
    return svg;
  }

  // ---------- live training ----------
  let trainTimer = null;
  let wasRunning = false;
  const seen = new Map(); // step -> loss, gathered from polls when the server keeps no history
  function lossPoints(t) {
    const hist = t.losses ?? t.loss_history ?? t.history;
    if (Array.isArray(hist) && hist.length) {
      return hist.map((p, i) => (typeof p === 'number' ? [i + 1, p] : [p.step ?? i + 1, p.loss])).filter((p) => Number.isFinite(p[1]));
    }
    if (t.running && Number.isFinite(t.loss) && t.step > 0) seen.set(t.step, t.loss);
    return [...seen.entries()].sort((a, b) => a[0] - b[0]);
  }
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
    const running = !!(t.running ?? t.active ?? (t.state === 'running'));
    const step = t.step ?? 0;
    const total = t.until ?? t.target ?? t.total ?? t.steps ?? step;
    const frac = total ? Math.min(1, step / total) : 0;
    $('train-bar').style.width = (100 * frac) + '%';
    $('train-progress').setAttribute('aria-valuenow', String(Math.round(100 * frac)));
    const pts = lossPoints(t);
    const loss = t.loss || (pts.slice(-1)[0] || [])[1];
    const bits = [(running ? 'Training: step ' : 'Idle at step ') + step + (total && running ? ' of ' + total : '')];
    if (t.committed !== undefined && t.committed !== step) bits.push('queries see step ' + t.committed);
    if (loss) bits.push('loss ' + num(loss, 3));
    if (t.eval_loss !== undefined && t.eval_loss !== null) bits.push('held-out ' + num(t.eval_loss, 3));
    if (running && t.tokens_per_sec) bits.push(Math.round(t.tokens_per_sec) + ' tok/s');
    if (t.error) bits.push('stopped: ' + (t.error.message || t.error));
    $('train-status').textContent = bits.join(' · ');
    $('loss-chart').replaceChildren(pts.length ? lossSVG(pts, running ? total : 0)
      : h('p', { class: 'muted small' }, 'The loss curve draws while a run goes on.'));
    $('train-panel').classList.toggle('running', running);
    if (wasRunning && !running) loadModel();
    wasRunning = running;
    trainTimer = setTimeout(pollTrain, running ? 1000 : 5000);
  }
  $('train-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError();
    try {
      await api('POST', '/v1/train', { steps: parseInt($('train-steps').value, 10) });
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
  window.spotlight = { run, select, get answer() { return answer; } };
})();
