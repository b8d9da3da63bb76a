// The page's SVG charts: the per-layer timeline over training steps (its bins are
// clickable step ranges) and the training loss curve.
'use strict';

(function (SL) {
  const { s } = SL;

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

  // xTicks picks the most ticks (at most six) whose labels fit side by side in w units
  // with a gap: niceTicks alone may return twice what it is asked for, and four-digit step
  // numbers then run into each other.
  const charW = 6.2; // a 10-unit sans digit, generously
  function xTicks(lo, hi, w) {
    for (let n = 6; n >= 2; n--) {
      const ticks = niceTicks(lo, hi, n);
      const widest = Math.max(...ticks.map((v) => tickText(v).length)) * charW;
      if (ticks.length * (widest + 14) <= w) return ticks;
    }
    return [lo, hi].map((v) => Math.round(v));
  }

  // panel draws one chart panel (axes, ticks, labels, series) into g, in a W×H box, and
  // returns its x scale. With keepZero false (the loss curve) the y range hugs the data.
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
    for (const v of xTicks(xr[0], xr[1], w)) {
      g.append(s('line', { x1: X(v), x2: X(v), y1: y0 + hgt, y2: y0 + hgt + 4, class: 'axis' }));
      g.append(s('text', { x: X(v), y: y0 + hgt + 14, class: 'tick xtick', 'text-anchor': 'middle' }, tickText(v)));
    }
    g.append(s('line', { x1: x0, x2: x0, y1: y0, y2: y0 + hgt, class: 'axis' }));
    g.append(s('line', { x1: x0, x2: x0 + w, y1: y0 + hgt, y2: y0 + hgt, class: 'axis' }));
    for (const se of series) {
      const d = se.pts.map((p, i) => (i ? 'L' : 'M') + X(p[0]).toFixed(1) + ' ' + Y(p[1]).toFixed(1)).join(' ');
      g.append(s('path', { d, class: 'series ' + se.cls }, s('title', {}, se.name)));
    }
    g.append(s('text', { class: 'axis-label', transform: `translate(${x0 - 46} ${y0 + hgt / 2}) rotate(-90)`, 'text-anchor': 'middle' }, ylabel));
    if (xlabel) g.append(s('text', { class: 'axis-label', x: x0 + w / 2, y: y0 + hgt + 30, 'text-anchor': 'middle' }, xlabel));
    let lx = x0 + w - 4;
    for (const se of series.slice().reverse()) {
      g.append(s('text', { x: lx, y: y0 + 12, class: 'legend', 'text-anchor': 'end' }, se.name));
      lx -= 8 + se.name.length * 6.2;
      g.append(s('line', { x1: lx - 14, x2: lx - 2, y1: y0 + 8, y2: y0 + 8, class: 'series ' + se.cls }));
      lx -= 22;
    }
    return X;
  }

  // A bin covers its steps from_step..to_step inclusive: on the axis, from_step−½ to to_step+½,
  // so neighbouring bins meet and each value is a flat segment.
  function stepPts(bins, f) {
    const pts = [];
    for (const b of bins) pts.push([b.from_step - 0.5, f(b)], [b.to_step + 0.5, f(b)]);
    return pts;
  }

  // timelineSVG draws Σα and Σ contribution per bin, W units wide. Each bin is a target:
  // onBin(from, to) limits the answer to its steps; range (or null) is the current limit;
  // unit names what the contributions add up to.
  function timelineSVG(bins, W, onBin, range, unit) {
    const ph = W < 480 ? 100 : 120, H = 2 * ph + 110;
    const box1 = { x0: 62, y0: 10, w: W - 74, hgt: ph };
    const box2 = { x0: 62, y0: ph + 60, w: W - 74, hgt: ph };
    const xr = [Math.min(...bins.map((b) => b.from_step)) - 0.5, Math.max(...bins.map((b) => b.to_step)) + 0.5];
    const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'group',
      'aria-label': 'Attention mass and contribution over training steps; each bin is a button that limits the answer to its steps' });
    svg.append(s('title', {}, 'Attention mass (Σα, dimensionless) and contribution over training steps'));
    const g1 = s('g', { class: 'panel-attention' });
    const X = panel(g1, box1, xr, [
      { name: 'Σ|α|', cls: 'abs-attention', pts: stepPts(bins, (b) => b.abs_attention) },
      { name: 'Σα', cls: 'attention', pts: stepPts(bins, (b) => b.attention) },
    ], 'attention mass Σα', null);
    const g2 = s('g', { class: 'panel-contribution' });
    panel(g2, box2, xr, [
      { name: 'Σ contribution', cls: 'contribution', pts: stepPts(bins, (b) => b.contribution) },
    ], 'contribution (' + unit + ')', 'training step');
    svg.append(g1, g2);
    svg.append(s('text', { x: 4, y: ph + 40, class: 'unit-note' }, 'Click a bin to answer from its training steps only'));
    const hits = s('g', { class: 'bins' });
    for (const b of bins) {
      const x = X(b.from_step - 0.5), w = Math.max(2, X(b.to_step + 0.5) - x);
      const on = range && b.from_step >= range[0] && b.to_step <= range[1];
      const label = `steps ${b.from_step}–${b.to_step}: click to answer from these steps only`;
      const go = () => onBin(b.from_step, b.to_step);
      hits.append(s('rect', {
        x, y: box1.y0, width: w, height: box2.y0 + box2.hgt - box1.y0, class: 'bin-hit' + (on ? ' active' : ''),
        tabindex: 0, role: 'button', 'aria-label': label, 'data-from': b.from_step, 'data-to': b.to_step,
        onclick: go, onkeydown: (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } },
      }, s('title', {}, label)));
    }
    svg.append(hits);
    return svg;
  }

  function lossSVG(points, total) {
    const W = 320, H = 150;
    const svg = s('svg', { class: 'loss', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'training loss over steps' });
    if (!points.length) return svg;
    const xr = [Math.min(...points.map((p) => p[0])), Math.max(total || 0, ...points.map((p) => p[0]))];
    if (xr[1] === xr[0]) xr[1] += 1;
    const g = s('g');
    panel(g, { x0: 52, y0: 6, w: W - 62, hgt: H - 46 }, xr, [{ name: 'loss', cls: 'loss-line', pts: points }], 'train loss (nats)', 'training step', false);
    svg.append(g);
    return svg;
  }

  Object.assign(SL, { timelineSVG, lossSVG, xTicks });
})(window.SL);
