// One run as the user sees it: a collapsible timeline of its agents (each a collapsible step:
// started → thinking → tools with arguments, status and duration → completed), then the
// answer: its first sentence prominent, the one chart that supports it (a full analysis
// report gets its KPIs and charts above it instead), the rest of the markdown, and follow-up
// questions that ask themselves when clicked. Updated in place, keyed by step and item, so
// focus and open/closed state survive new events.

import { h, clear, announce } from './dom.js';
import { duration, args } from './format.js';
import { renderMarkdown } from './markdown.js';
import { reportCharts, answerChart } from './charts.js';

const AGENT_LABELS = {
  supervisor: 'Supervisor',
  triage: 'Triage',
  data: 'Data',
  anomaly: 'Anomaly',
  performance: 'Performance',
  optimization: 'Optimization',
  report: 'Report',
  data_helper: 'Data helper',
};

/** What a finished run did, by the kind of its answer: a budget command is not an analysis. */
const RUN_NOUN = { budget: 'Budget command', conversation: 'Reply', help: 'Reply' };
/** A reply that went well reads as one word ("Answered in 17 ms"), not "Reply done". */
const REPLY_OK = 'Answered';

/** The run's answer shape (`data.answer`: kind, lead, chart), once the supervisor has sent it. */
function answerShape(view) {
  return view.data && typeof view.data.answer === 'object' && view.data.answer ? view.data.answer : null;
}

function runNoun(view) {
  const shape = answerShape(view);
  return (shape && RUN_NOUN[shape.kind]) || 'Analysis';
}

/** The finished run's header: what it was and how it ended, with its time. */
function finishedHeadline(view) {
  const noun = runNoun(view);
  const took = view.endedAt ? ` in ${elapsed(view.startedAt, view.endedAt)}` : '';
  if (noun === RUN_NOUN.conversation && view.status === 'ok') return `${REPLY_OK}${took}`;
  return `${noun} ${STATUS_TEXT[view.status] || view.status}${took}`;
}

const STATUS_TEXT = { running: 'running', ok: 'done', error: 'failed', cancelled: 'cancelled' };
const STATUS_ICON = { running: '◌', ok: '✓', error: '✕', cancelled: '–' };

function elapsed(from, to) {
  const a = Date.parse(from);
  const b = Date.parse(to);
  return Number.isFinite(a) && Number.isFinite(b) && b >= a ? duration(b - a) : '';
}

function agentLabel(agent) {
  return AGENT_LABELS[agent] || agent;
}

/** A details element that remembers when the user opened or closed it. */
function collapsible(className, open) {
  const summary = h('summary');
  const details = h('details', { class: className }, summary);
  details.open = open;
  details.userToggled = false;
  summary.addEventListener('click', () => {
    details.userToggled = true;
  });
  return { details, summary };
}

export class RunView {
  constructor(runId, { live, onCancel, onAsk }) {
    this.runId = runId;
    this.live = live;
    this.onCancel = onCancel;
    this.onAsk = onAsk;
    this.focusChart = null;
    this.followupsShown = false;
    this.steps = new Map();
    this.answerId = null;
    this.chartsShown = false;
    this.announcedEnd = false;
    const t = collapsible('timeline', live);
    this.timeline = t.details;
    this.headIcon = h('span', { class: 'run-icon', 'aria-hidden': 'true' });
    this.headline = h('span', { class: 'run-headline' });
    this.counts = h('span', { class: 'run-counts muted small' });
    t.summary.append(this.headIcon, this.headline, this.counts);
    this.stepList = h('ol', { class: 'steps', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Agent steps' });
    this.cancelButton = h('button', { type: 'button', class: 'secondary small-button cancel-run', hidden: true }, 'Stop this run');
    this.cancelButton.addEventListener('click', () => this.onCancel(this.runId));
    this.timeline.append(this.stepList, this.cancelButton);
    this.errorBox = h('p', { class: 'run-error', role: 'alert', hidden: true });
    this.visuals = h('div', { class: 'visuals-slot' });
    this.answer = h('article', { class: 'answer markdown', hidden: true, 'aria-label': 'Answer' });
    this.followups = h('nav', { class: 'followups', hidden: true, 'aria-label': 'Follow-up questions' });
    this.el = h('section', { class: 'run', 'data-run-id': runId, 'data-status': 'running', 'aria-label': 'Analysis run' }, this.timeline, this.errorBox, this.visuals, this.answer, this.followups);
    this.headIcon.textContent = `${STATUS_ICON.running} `;
    this.headline.textContent = 'Starting…';
  }

  /** @param view Run.view(); @param answer the assistant message of this run, if any. */
  update(view, answer) {
    const done = view.status !== 'running';
    this.el.dataset.status = view.status;
    const tools = view.steps.reduce((n, st) => n + st.items.filter((i) => i.kind === 'tool').length, 0);
    const agents = view.steps.filter((st) => st.agent !== 'supervisor').length;
    this.headIcon.textContent = `${STATUS_ICON[view.status] || STATUS_ICON.running} `;
    if (!done) this.headline.textContent = `Working: ${agentLabel(lastRunning(view))}…`;
    else this.headline.textContent = finishedHeadline(view);
    this.counts.textContent = ` · ${agents} agent${agents === 1 ? '' : 's'}, ${tools} tool call${tools === 1 ? '' : 's'}`;
    this.cancelButton.hidden = done || !this.live;

    view.steps.forEach((st, k) => this.updateStep(st, k, done));

    if (done && !this.timeline.userToggled) this.timeline.open = false;
    if (done && view.status !== 'ok' && view.summary) {
      this.errorBox.hidden = false;
      this.errorBox.textContent = view.summary;
    }
    const shape = done ? answerShape(view) : null;
    if (!this.chartsShown && done && view.data) {
      // A full report shows its KPIs and charts above it; a focused answer (a report about
      // one kind of saving among them) its one chart.
      if (!shape || (shape.kind === 'report' && (!shape.chart || shape.chart.kind === 'report'))) {
        const charts = reportCharts(view.data);
        if (charts) clear(this.visuals).append(charts);
      } else {
        this.focusChart = answerChart(shape.chart);
      }
      this.chartsShown = true;
    }
    if (answer && answer.id !== this.answerId) {
      this.answerId = answer.id;
      clear(this.answer).append(renderMarkdown(answer.content));
      const first = this.answer.firstElementChild;
      if (first && first.tagName === 'P') first.classList.add('answer-lead');
      this.answer.hidden = false;
    }
    // A run watched live that has ended with its answer (the answer and the run's end come in
    // either order): the thread view brings its top into view, once.
    if (this.live && done && !this.answer.hidden && !this.arrivalShown) {
      this.arrivalShown = true;
      this.answerArrived = true;
    }
    // The chart goes right under the first sentence it supports.
    if (this.focusChart && !this.answer.hidden && this.focusChart.parentNode !== this.answer) {
      const lead = this.answer.querySelector('.answer-lead');
      this.answer.insertBefore(this.focusChart, lead ? lead.nextSibling : this.answer.firstChild);
    }
    if (!this.followupsShown && shape && Array.isArray(shape.suggestions) && shape.suggestions.length && this.onAsk) {
      this.followupsShown = true;
      const buttons = shape.suggestions.slice(0, 4).map((q) => {
        const b = h('button', { type: 'button', class: 'chip followup' }, String(q));
        b.addEventListener('click', () => this.onAsk(String(q)));
        return b;
      });
      clear(this.followups).append(h('span', { class: 'followups-label muted small' }, 'Ask next:'), ...buttons);
      this.followups.hidden = false;
    }
    if (done && this.live && !this.announcedEnd) {
      this.announcedEnd = true;
      announce(view.status === 'ok' ? 'The answer is ready.' : `The run ended: ${view.summary}`);
    }
  }

  /** Where a reader of the finished run starts: its one-line (collapsed) timeline, with the
   * KPIs, charts and the answer's first sentence right under it. */
  firstContent() {
    return this.el;
  }

  updateStep(st, index, runDone) {
    let v = this.steps.get(st.key);
    if (!v) {
      const c = collapsible('step-details', this.live && st.status === 'running');
      const icon = h('span', { class: 'step-icon', 'aria-hidden': 'true' });
      const name = h('span', { class: 'step-name' }, agentLabel(st.agent));
      const state = h('span', { class: 'step-state' });
      c.summary.append(icon, name, state);
      const items = h('ul', { class: 'step-items' });
      const result = h('p', { class: 'step-summary', hidden: true });
      c.details.append(items, result);
      const li = h('li', { class: 'step', 'data-agent': st.agent, 'data-step': st.key }, c.details);
      v = { li, details: c.details, icon, state, items, result, itemEls: new Map(), status: null };
      this.steps.set(st.key, v);
      this.stepList.append(li);
    }
    if (this.stepList.children[index] !== v.li) this.stepList.insertBefore(v.li, this.stepList.children[index] || null);
    if (v.status !== st.status) {
      v.status = st.status;
      v.li.dataset.status = st.status;
      v.icon.textContent = STATUS_ICON[st.status] || '•';
      const took = st.endedAt ? elapsed(st.startedAt, st.endedAt) : '';
      v.state.textContent = ` ${STATUS_TEXT[st.status] || st.status}${took ? ` · ${took}` : ''}`;
      if (st.status !== 'running' && !v.details.userToggled && st.agent !== 'supervisor') v.details.open = false;
    }
    if (runDone && !v.details.userToggled) v.details.open = false;
    st.items.forEach((item, k) => this.updateItem(v, item, k));
    // Agents often end on the sentence they just said; showing it twice adds nothing.
    const last = st.items[st.items.length - 1];
    const repeated = last && (last.kind === 'thinking' ? last.text : last.summary) === st.summary;
    if (st.summary && !repeated) {
      v.result.hidden = false;
      v.result.textContent = st.summary;
    }
  }

  updateItem(v, item, index) {
    let e = v.itemEls.get(item.key);
    if (!e) {
      if (item.kind === 'thinking') {
        e = { li: h('li', { class: 'item thinking' }, item.text) };
      } else {
        const status = h('span', { class: 'tool-status' });
        const detail = h('span', { class: 'tool-detail' });
        const argText = args(item.args);
        e = {
          li: h('li', { class: 'item tool', 'data-tool': item.tool }, h('span', { class: 'tool-head' }, h('code', { class: 'tool-name' }, String(item.tool ?? 'tool')), status), argText ? h('code', { class: 'tool-args' }, argText) : null, detail),
          status,
          detail,
          shown: null,
        };
      }
      v.itemEls.set(item.key, e);
      v.items.append(e.li);
    }
    if (v.items.children[index] !== e.li) v.items.insertBefore(e.li, v.items.children[index] || null);
    if (item.kind === 'tool') {
      const shown = `${item.status}|${item.durationMs}|${item.summary}`;
      if (e.shown !== shown) {
        e.shown = shown;
        e.li.dataset.status = item.status;
        e.status.textContent = `${item.status === 'running' ? '◌ running' : item.status === 'ok' ? '✓ ok' : '✕ error'}${item.durationMs !== null && item.durationMs !== undefined ? ` · ${duration(item.durationMs)}` : ''}`;
        e.detail.textContent = item.summary || '';
      }
    }
  }
}

function lastRunning(view) {
  for (let k = view.steps.length - 1; k >= 0; k -= 1) if (view.steps[k].status === 'running') return view.steps[k].agent;
  return 'supervisor';
}
