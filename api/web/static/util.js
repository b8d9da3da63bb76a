// Shared helpers of Spotlight's page: DOM building, number formatting and the API client.
// Plain scripts loaded in order (util, charts, evidence, influence, app) share the one namespace SL.
'use strict';

window.SL = (function () {
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
  // short is a number for a sentence: three significant digits at most, thousands separated.
  function short(x) {
    if (x === undefined || x === null || Number.isNaN(x)) return '—';
    const a = Math.abs(x);
    if (a === 0) return '0';
    if (a >= 100) return Math.round(x).toLocaleString('en');
    if (a >= 10) return x.toFixed(1);
    if (a >= 0.01) return x.toFixed(2);
    return x.toPrecision(2);
  }
  const shortSigned = (x) => (x > 0 ? '+' : '') + short(x);
  const count = (n) => (typeof n === 'number' ? n.toLocaleString('en') : '—');
  const pct = (x) => (x === undefined || x === null || Number.isNaN(x) ? '—' : (100 * x).toFixed(1) + '%');
  function showChar(c) {
    if (c === ' ') return '␣';
    if (c === '\n') return '↵';
    if (c === '\t') return '⇥';
    return c;
  }
  // quoted shows a piece of corpus text in a sentence: newlines as ↵, the rest as it is.
  const quoted = (t) => '“' + String(t).replace(/\n/g, '↵') + '”';
  function bytes(n) {
    if (typeof n !== 'number') return String(n);
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + ' ' + u[i];
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(code, message, status) { super(message); this.code = code; this.status = status; }
  }

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

  return { h, s, num, signed, short, shortSigned, count, pct, showChar, quoted, bytes, ApiError, api };
})();
