// The evidence views of one token and layer: the best passage behind each generated
// character, the pattern table (training tokens by how much context they shared) with its
// plain-words summary, and the training passages coloured by what their characters gave.
'use strict';

(function (SL) {
  const { h, short, shortSigned, count, quoted } = SL;

  // bestPassage is the passage that supported the token most in this layer, or null when
  // no passage gave a positive contribution.
  function bestPassage(t, layer) {
    const la = t && t.layers && t.layers[layer];
    const p = la && la.passages && la.passages[0];
    return p && p.contribution > 0 ? p : null;
  }

  // Colours of the diverging scale: green for a positive contribution, red for a negative
  // one; the strength grows with √|v|, so that the many small values stay visible.
  const POS = [31, 138, 91], NEG = [192, 57, 43];
  function tint(v, m, maxAlpha = 0.75) {
    if (!(m > 0) || !v) return '';
    const a = Math.min(1, Math.sqrt(Math.abs(v) / m)) * maxAlpha;
    const c = v > 0 ? POS : NEG;
    return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${a.toFixed(3)})`;
  }

  // passageText shows a passage with each character's background set by its tokens[i].
  // A newline shows as ↵ and the text flows on: the corpus wraps its lines by hand.
  function passageText(p, m) {
    const chars = Array.from(p.text || '');
    const vals = p.tokens || [];
    const el = h('div', { class: 'passage-text' });
    chars.forEach((c, i) => {
      const v = vals[i] || 0;
      const sp = h('span', { title: 'trained to predict ' + quoted(c) + ': ' + shortSigned(v), class: c === '\n' ? 'nl' : null }, c === '\n' ? '↵' : c);
      const bg = tint(v, m);
      if (bg) sp.style.backgroundColor = bg;
      el.append(sp);
      if (c === '\n') el.append(h('wbr'));
    });
    return el;
  }

  // scaleOf is the largest |tokens[i]| over passages: the end of the colour scale.
  const scaleOf = (ps) => Math.max(0, ...ps.flatMap((p) => (p.tokens || []).map(Math.abs)));

  function colourLegend(m) {
    const stops = [-1, -0.25, 0, 0.25, 1];
    return h('div', { class: 'colour-legend', 'aria-label': 'colour scale of the passages' },
      h('span', { class: 'muted' }, 'Each character: what the training tokens that predicted it gave'),
      h('span', { class: 'swatches' }, stops.map((f) => {
        const sw = h('span', { class: 'swatch' }, shortSigned(f * m));
        const bg = tint(f * m, m);
        if (bg) sw.style.backgroundColor = bg;
        return sw;
      })));
  }

  function passageItem(p, m, t, extra) {
    return h('li', { class: 'passage', 'data-start': p.start },
      h('div', { class: 'passage-meta' },
        extra || null,
        h('strong', { class: p.contribution >= 0 ? 'pos-text' : 'neg-text' }, shortSigned(p.contribution)),
        ` from ${count(p.count)} training tokens in corpus characters ${count(p.start)}–${count(p.end)}`,
        ' · Σα ', short(p.alpha)),
      passageText(p, m));
  }

  function passagesView(la, t) {
    const ps = la.passages || [];
    if (!ps.length) return h('p', { class: 'muted' }, 'No passages.');
    const m = scaleOf(ps);
    return h('div', { class: 'passages' }, colourLegend(m),
      h('ol', { class: 'passage-list' }, ps.map((p) => passageItem(p, m, t))));
  }

  // ---------- patterns ----------
  // visible shows a piece of context: newlines as ↵, spaces at either end as ␣.
  const visible = (t) => String(t).replace(/\n/g, '↵').replace(/^ +| +$/g, (sp) => '␣'.repeat(sp.length));

  function rowsOf(la) { return (la.patterns || []).filter((r) => r.count > 0); }

  function objectivePhrase(la, name) {
    const total = short(la.dual_check ? la.dual_check.primal : NaN);
    if (name !== 'out') return `of this layer’s projected output ${total} (first order)`;
    if (la.objective === 'margin') return `of this margin’s ${total} (over ${quoted(la.runner_up || '?')})`;
    if (la.objective === 'logp') return `of this log p’s ${total} (first order)`;
    return `of this logit’s ${total}`;
  }

  function clause(r, t, first) {
    const after = (first ? 'After ' : 'after ');
    if (r.n === 0) return [first ? 'All ' : 'all ', count(r.count), ' training tokens together gave ', h('strong', {}, shortSigned(r.contribution))];
    const share = r.count > 1 ? ` (${Math.round(100 * r.same_target / r.count)}% followed by ${quoted(t.token)})` : '';
    return [after, h('code', { class: 'ctx-inline' }, visible(r.suffix)), ', ', count(r.count),
      r.count === 1 ? ' training token' : ' training tokens', share, ' gave ', h('strong', {}, shortSigned(r.contribution))];
  }

  // patternSentence says the table in plain words: the longest shared context, the row that
  // gave the most, and how the layer's total adds up.
  function patternSentence(la, t, name) {
    const rows = rowsOf(la);
    const longest = rows.filter((r) => r.n > 0).pop();
    if (!longest) return h('p', { class: 'summary' }, 'No training token shared even the last character of this context.');
    const inner = rows.filter((r) => r.n > 0 && r.n < longest.n);
    const best = inner.reduce((a, r) => (!a || r.contribution > a.contribution ? r : a), null);
    const parts = [clause(longest, t, true)];
    if (best) parts.push('; ', clause(best, t, false));
    parts.push(' ', objectivePhrase(la, name), '.');
    const all = rows.find((r) => r.n === 0);
    if (all) {
      parts.push(' ', clause(all, t, true), ', the initial weights W₀ ', shortSigned(la.w0_term),
        ' and the bias ', shortSigned(la.bias_term), '.');
    }
    return h('p', { class: 'summary' }, parts);
  }

  function signedBar(v, m) {
    const frac = m > 0 ? Math.min(1, Math.abs(v) / m) : 0;
    const fill = h('span', { class: 'fill ' + (v < 0 ? 'neg' : 'pos') });
    fill.style.width = (50 * frac) + '%';
    if (v < 0) fill.style.right = '50%'; else fill.style.left = '50%';
    return h('span', { class: 'cbar' }, h('span', { class: 'track diverging' }, fill), h('span', { class: 'cval' }, shortSigned(v)));
  }

  function patternTable(la, t) {
    const rows = la.patterns || [];
    if (!rows.length) return h('p', { class: 'muted' }, 'No patterns.');
    const m = Math.max(1e-30, ...rows.map((r) => Math.abs(r.contribution)));
    return h('div', { class: 'table-wrap' }, h('table', { class: 'patterns' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', title: 'characters of context shared with this one' }, 'n'),
        h('th', { scope: 'col' }, 'shared context'),
        h('th', { scope: 'col', class: 'numc', title: 'training tokens (every position and epoch) that shared it' }, 'tokens'),
        h('th', { scope: 'col', class: 'numc', title: 'of which were trained to predict ' + quoted(t.token) }, 'then ' + quoted(t.token)),
        h('th', { scope: 'col', title: 'sum of their contributions' }, 'contribution'),
        h('th', { scope: 'col', class: 'numc alpha-col', title: 'sum of their attention weights α' }, 'Σα'))),
      h('tbody', {}, rows.map((r) => h('tr', { class: r.count ? '' : 'empty', 'data-n': r.n },
        h('td', { class: 'numc' }, r.n),
        h('td', {}, r.n ? h('code', { class: 'ctx-inline' }, visible(r.suffix)) : h('span', { class: 'muted' }, 'any (every training token)')),
        h('td', { class: 'numc' }, count(r.count)),
        h('td', { class: 'numc' }, r.count ? Math.round(100 * r.same_target / r.count) + '%' : '—'),
        h('td', {}, signedBar(r.contribution, m)),
        h('td', { class: 'numc alpha-col' }, short(r.alpha)))))));
  }

  // sharedChars is how many characters a training context shares with the query's context
  // at their ends: the pattern row the training token belongs to.
  function sharedChars(a, b) {
    const x = Array.from(a || ''), y = Array.from(b || '');
    let n = 0;
    while (n < x.length && n < y.length && x[x.length - 1 - n] === y[y.length - 1 - n]) n++;
    return n;
  }

  Object.assign(SL, { visible, bestPassage, tint, passageText, passageItem, passagesView, scaleOf, patternSentence, patternTable, sharedChars });
})(window.SL);
