// The exact-influence view of one token: a button that asks the server for the derivative
// of the token's loss with respect to every training token's loss weight through the whole
// recorded run (POST /v1/influence, a background job), a progress bar while it runs, then
// the most supporting and most opposing training tokens with their contexts, and a check by
// retraining without the most supporting ones (POST /v1/counterfactual with rank_by influence).
'use strict';

(function (SL) {
  const { h, num, signed, pct, showChar, api } = SL;

  // poll follows a job at path/{id} until it is no longer queued or running, showing its
  // progress on bar and note.
  async function poll(path, job, bar, note, verb) {
    while (job.status === 'queued' || job.status === 'running') {
      bar.value = job.progress;
      note.textContent = verb + '… ' + pct(job.progress);
      await new Promise((r) => setTimeout(r, 300));
      job = await api('GET', path + '/' + encodeURIComponent(job.id));
    }
    if (job.status !== 'done') throw new Error(verb + ' ' + job.status + (job.error ? ': ' + job.error : ''));
    bar.value = 1;
    return job;
  }

  function influenceBar(v, m) {
    const frac = Math.max(0, Math.min(1, Math.abs(v) / m));
    const fill = h('span', { class: 'fill ' + (v < 0 ? 'neg' : 'pos') });
    fill.style.width = (50 * frac) + '%';
    if (v < 0) fill.style.right = '50%'; else fill.style.left = '50%';
    return h('div', { class: 'bar influence', title: 'influence ' + v },
      h('span', { class: 'bar-label' }, 'influence'), h('span', { class: 'track diverging' }, fill),
      h('span', { class: 'bar-value' }, signed(v)));
  }

  function tokenList(tokens, kind) {
    const m = Math.max(1e-30, ...tokens.map((e) => Math.abs(e.influence)));
    return h('ol', { class: 'contexts influence-list ' + kind }, tokens.map((e, k) => h('li', { class: 'ctx' },
      h('div', { class: 'ctx-meta' }, '#' + (k + 1) + ' · step ' + e.step + ' · row ' + e.row + ' · pos ' + e.pos +
        ' · offset ' + e.offset + ' · Δloss without it ' + signed(e.delta_loss)),
      h('div', { class: 'ctx-text', title: 'training context; the highlighted character is the target it was trained to predict' },
        h('span', { class: 'ctx-before' }, e.context), h('mark', { class: 'target' + (/\s/.test(e.target) ? ' ws' : '') }, showChar(e.target))),
      h('div', { class: 'bars' }, influenceBar(e.influence, m)))));
  }

  // retrainCheck removes the k most supporting tokens by influence and retrains without them.
  function retrainCheck(text, position, k) {
    const out = h('div', { class: 'inf-retrain' });
    const btn = h('button', { type: 'button', class: 'inf-check', title: 'replay training without the ' + k + ' most supporting training tokens by influence' },
      'check by retraining without the ' + k + ' most supporting');
    btn.onclick = async () => {
      btn.disabled = true;
      const bar = h('progress', { class: 'cf-progress', max: 1, value: 0 });
      const note = h('span', { class: 'cf-status' }, 'retraining…');
      out.replaceChildren(bar, ' ', note);
      try {
        let job = await api('POST', '/v1/counterfactual', { text, position, top_k: k, rank_by: 'influence' });
        job = await poll('/v1/counterfactual', job, bar, note, 'retraining');
        const r = job.result;
        out.replaceChildren(h('span', { class: 'cf-result' },
          'retrained without them: Δloss ', h('strong', {}, signed(r.logp - r.real_logp)), ' real vs ' +
          signed(r.logp - r.influence_predicted_logp) + ' predicted by influence (first order) and ' +
          signed(r.logp - r.predicted_logp) + ' by the memory; ' + r.replayed_steps + ' steps from step ' + r.from_step +
          ', ' + num(r.seconds, 2) + ' s'));
      } catch (e) {
        out.replaceChildren(h('span', { class: 'cf-error' }, e.message), ' ', btn);
        btn.disabled = false;
      }
    };
    out.append(btn);
    return out;
  }

  // influenceView is the section for the token at position of text.
  function influenceView(text, position) {
    const k = 10;
    const out = h('div', { class: 'inf-body' });
    const btn = h('button', { type: 'button', class: 'inf-run', title: 'differentiate this token’s loss through every training step (replays the run)' },
      'exact influence');
    btn.onclick = async () => {
      btn.disabled = true;
      const bar = h('progress', { class: 'inf-progress', max: 1, value: 0 });
      const note = h('span', { class: 'cf-status' }, 'reversing training…');
      out.replaceChildren(bar, ' ', note);
      try {
        let job = await api('POST', '/v1/influence', { text, position, top_k: k });
        job = await poll('/v1/influence', job, bar, note, 'reversing training');
        const r = job.result;
        out.replaceChildren(
          h('p', { class: 'inf-summary' }, 'Loss ' + num(r.loss) + ' (p ' + num(r.prob, 3) + ') after step ' + r.checkpoint + '; ' +
            r.scored.toLocaleString('en') + ' training tokens scored ' + (r.cached ? 'earlier (cached)' : 'in ' + num(r.seconds, 2) + ' s') +
            '. Removing the ' + r.top.length + ' of largest |influence| changes the loss by ', h('strong', {}, signed(r.predicted_delta_loss)),
            ' to first order (minus the sum of their influences).'),
          h('h4', {}, 'Most supporting: removing them raises the loss by ' + signed(r.predicted_delta_loss_supporting) + ' (first order)'),
          tokenList(r.supporting, 'supporting'),
          retrainCheck(text, position, k),
          h('h4', {}, 'Most opposing: removing them lowers the loss by ' + num(-r.predicted_delta_loss_opposing) + ' (first order)'),
          tokenList(r.opposing, 'opposing'));
      } catch (e) {
        out.replaceChildren(h('span', { class: 'cf-error' }, e.message), ' ', btn);
        btn.disabled = false;
      }
    };
    out.append(btn);
    return h('section', { class: 'influence-card' },
      h('h3', {}, 'Exact influence through training'),
      h('p', { class: 'muted' }, 'The derivative of this token’s loss with respect to each training token’s weight, through every recorded SGD step ' +
        '(momentum, weight decay, clipping and schedule included). Positive: training on it raised the loss. The server replays the whole run, so it takes a while.'),
      out);
  }

  SL.influenceView = influenceView;
})(window.SL);
