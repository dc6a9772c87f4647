// The open conversation: user messages, each followed by its run (timeline, charts, answer),
// plus messages still in the outbox. Rendered in place by key so running timelines keep their
// state; keeps the view scrolled to the newest content while the user is at the bottom, and
// shows the top of a new answer when its run completes.

import { h } from './dom.js';
import { time } from './format.js';
import { renderMarkdown } from './markdown.js';
import { RunView } from './timeline.js';

export class ThreadView {
  constructor({ list, scroller, welcome, onCancel, onRetry, needRun, onAsk }) {
    this.list = list;
    this.scroller = scroller;
    this.welcome = welcome;
    this.onCancel = onCancel;
    this.onAsk = onAsk;
    this.onRetry = onRetry;
    this.needRun = needRun;
    this.threadId = undefined;
    this.nodes = new Map();
    // Whether the view follows new content down. Decided by the user's own scrolling only:
    // content that grows (a chart drawn, a step added) moves the bottom away without the
    // user having scrolled, and must not stop the view from following.
    this.following = true;
    this.scrolledTo = null;
    scroller.addEventListener('scroll', () => {
      if (this.scrolledTo !== null && Math.abs(scroller.scrollTop - this.scrolledTo) < 2) return;
      this.scrolledTo = null;
      this.following = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    });
  }

  scrollTo(top) {
    this.scroller.scrollTop = top;
    this.scrolledTo = this.scroller.scrollTop;
  }

  /** Shows another thread (null: a new chat); forgets the old one's nodes. */
  open(threadId) {
    if (threadId === this.threadId) return;
    this.threadId = threadId;
    this.nodes.clear();
    this.list.replaceChildren();
    this.following = true;
  }

  render(store) {
    const thread = this.threadId ? store.threads.get(this.threadId) : null;
    const messages = thread && thread.messages ? [...thread.messages.values()] : [];
    const keys = [];
    const seenRuns = new Set();
    const seenClientIds = new Set();
    const answers = new Map();
    for (const m of messages) if (m.role === 'assistant' && m.run_id) answers.set(m.run_id, m);

    const runBlock = (runId) => {
      if (seenRuns.has(runId)) return;
      seenRuns.add(runId);
      const run = store.runs.get(runId);
      const view = run ? run.view() : null;
      if (!view || view.status !== 'ok' || !answers.has(runId)) this.needRun(runId);
      const key = `r:${runId}`;
      let rv = this.nodes.get(key);
      if (!rv) {
        // Live: running, or asked from this tab (a fast run can end before it is first drawn).
        const live = !view || view.status === 'running' || store.askedRuns.has(runId);
        rv = new RunView(runId, { live, onCancel: this.onCancel, onAsk: this.onAsk });
        this.nodes.set(key, rv);
      }
      if (view) rv.update(view, answers.get(runId));
      keys.push([key, rv.el]);
    };

    for (const m of messages) {
      if (m.role === 'assistant' && m.run_id) continue;
      if (m.client_msg_id) seenClientIds.add(m.client_msg_id);
      const key = `m:${m.id}`;
      let node = this.nodes.get(key);
      if (!node) {
        node = { el: messageEl(m) };
        this.nodes.set(key, node);
      }
      keys.push([key, node.el]);
      if (m.role === 'user' && m.run_id) runBlock(m.run_id);
    }
    for (const p of store.outbox.values()) {
      if ((p.thread_id ?? null) !== (this.threadId ?? null) || seenClientIds.has(p.client_msg_id)) continue;
      const key = `p:${p.client_msg_id}`;
      let node = this.nodes.get(key);
      if (!node) {
        node = pendingEl(p, this.onRetry);
        this.nodes.set(key, node);
      }
      node.update(p);
      keys.push([key, node.el]);
      if (p.run_id) runBlock(p.run_id);
    }
    // Runs of this thread whose user message has not arrived yet.
    for (const run of store.runs.values()) if (this.threadId && run.threadId === this.threadId) runBlock(run.id);

    keys.forEach(([, el], k) => {
      if (this.list.children[k] !== el) this.list.insertBefore(el, this.list.children[k] || null);
    });
    while (this.list.children.length > keys.length) this.list.lastElementChild.remove();
    this.welcome.hidden = keys.length > 0;
    // A run that completes while the user follows it shows the top of its answer — the
    // headline figure, KPIs and charts — not the footnotes at the end of it; the view then
    // stays there for the user to read. While it streams, and after the user scrolled away,
    // the user's own scroll is kept.
    const arrived = keys.map(([key]) => this.nodes.get(key)).find((n) => n instanceof RunView && n.answerArrived);
    if (arrived) arrived.answerArrived = false;
    if (arrived && this.following) {
      const box = this.scroller.getBoundingClientRect();
      const target = arrived.firstContent().getBoundingClientRect();
      this.scrollTo(this.scroller.scrollTop + target.top - box.top - 12);
      this.following = false;
    } else if (this.following) {
      this.scrollTo(this.scroller.scrollHeight);
    }
  }
}

function messageEl(m) {
  const body = m.role === 'assistant' ? h('div', { class: 'markdown' }, renderMarkdown(m.content)) : h('p', { class: 'message-text' }, String(m.content ?? ''));
  return h('li', { class: `message ${m.role === 'user' ? 'from-user' : 'from-assistant'}`, 'data-message-id': m.id }, h('span', { class: 'sr-only' }, m.role === 'user' ? 'You said: ' : 'Apogee: '), body, h('span', { class: 'message-meta muted small' }, time(m.created_at)));
}

function pendingEl(p, onRetry) {
  const state = h('span', { class: 'message-meta small' });
  const retry = h('button', { type: 'button', class: 'secondary small-button', hidden: true }, 'Send again');
  retry.addEventListener('click', () => onRetry(p.client_msg_id));
  const el = h('li', { class: 'message from-user pending', 'data-client-msg-id': p.client_msg_id }, h('span', { class: 'sr-only' }, 'You said: '), h('p', { class: 'message-text' }, p.content), state, retry);
  return {
    el,
    update(q) {
      el.dataset.state = q.error ? 'failed' : q.acked ? 'sent' : 'sending';
      state.textContent = q.error ? `Not sent: ${q.error}` : q.acked ? 'Sent' : 'Sending…';
      state.classList.toggle('error', Boolean(q.error));
      retry.hidden = !q.error;
    },
  };
}
