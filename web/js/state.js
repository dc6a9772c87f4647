// The client's model of one user's stream: threads, their messages, runs (each the set of its
// events by seq), the outbox of unacknowledged messages, and the last seq seen, persisted per
// user so a reload resumes where it left off. Events are de-duplicated twice: by the stream's
// seq (the wire is at-least-once) and per run by seq (REST history and live events overlap).

const AGENT_EVENTS = new Set(['agent_started', 'agent_thinking', 'tool_executing', 'tool_completed', 'agent_completed']);

/** Runs remembered as asked by this tab; a tab asks far fewer (the message rate bounds it). */
const MAX_ASKED_RUNS = 1000;

export class Run {
  constructor(id, threadId) {
    this.id = id;
    this.threadId = threadId;
    this.events = new Map();
    this.cached = null;
  }

  /** Adds an event; false when its seq was already here. */
  add(ev) {
    if (this.events.has(ev.seq)) return false;
    if (!this.threadId && ev.thread_id) this.threadId = ev.thread_id;
    this.events.set(ev.seq, ev);
    this.cached = null;
    return true;
  }

  /** The run as steps, derived from its events in seq order. */
  view() {
    if (this.cached) return this.cached;
    const ordered = [...this.events.values()].sort((a, b) => a.seq - b.seq);
    const steps = [];
    const open = new Map();
    const tools = new Map();
    let status = 'running';
    let summary = '';
    let data = null;
    let startedAt = null;
    let endedAt = null;
    const stepFor = (ev) => {
      let step = open.get(ev.agent);
      if (!step) {
        // An event whose start is not known (should not happen): show it under its agent.
        step = newStep(ev, null);
        steps.push(step);
        open.set(ev.agent, step);
      }
      return step;
    };
    for (const ev of ordered) {
      if (!AGENT_EVENTS.has(ev.type)) continue;
      if (ev.type === 'agent_started') {
        const step = newStep(ev, ev.parent_agent || null);
        steps.push(step);
        open.set(ev.agent, step);
        if (ev.agent === 'supervisor' && !startedAt) startedAt = ev.ts;
      } else if (ev.type === 'agent_thinking') {
        stepFor(ev).items.push({ kind: 'thinking', key: `t${ev.seq}`, text: String(ev.text ?? '') });
      } else if (ev.type === 'tool_executing') {
        const item = { kind: 'tool', key: `c${ev.call_id}`, tool: ev.tool, args: ev.args, status: 'running', summary: '', durationMs: null };
        tools.set(ev.call_id, item);
        stepFor(ev).items.push(item);
      } else if (ev.type === 'tool_completed') {
        let item = tools.get(ev.call_id);
        if (!item) {
          item = { kind: 'tool', key: `c${ev.call_id}`, tool: ev.tool, args: null };
          tools.set(ev.call_id, item);
          stepFor(ev).items.push(item);
        }
        item.status = ev.status === 'ok' ? 'ok' : 'error';
        item.summary = String(ev.summary ?? '');
        item.durationMs = ev.duration_ms;
      } else if (ev.type === 'agent_completed') {
        const step = stepFor(ev);
        step.status = ev.status;
        step.summary = String(ev.summary ?? '');
        step.endedAt = ev.ts;
        open.delete(ev.agent);
        if (ev.agent === 'supervisor') {
          status = ev.status;
          summary = step.summary;
          data = ev.data && typeof ev.data === 'object' ? ev.data : null;
          endedAt = ev.ts;
        }
      }
    }
    this.cached = { id: this.id, status, summary, data, steps, startedAt, endedAt, seqs: ordered.map((e) => e.seq) };
    return this.cached;
  }
}

function newStep(ev, parent) {
  return { key: `s${ev.seq}`, agent: String(ev.agent ?? '?'), parent, status: 'running', summary: '', items: [], startedAt: ev.ts, endedAt: null };
}

export class Store {
  constructor(userKey) {
    this.userKey = userKey;
    this.seqKey = `apogee.lastSeq.${userKey}`;
    this.outboxKey = `apogee.outbox.${userKey}`;
    const stored = Number(localStorage.getItem(this.seqKey));
    this.lastSeq = Number.isInteger(stored) && stored > 0 ? stored : null;
    /** id → {id, title, created_at, messages: Map|null (null: not loaded)} */
    this.threads = new Map();
    /** Thread ids, most recently active first. */
    this.order = [];
    this.runs = new Map();
    /** client_msg_id → {client_msg_id, content, thread_id, created_at, acked, error} */
    this.outbox = new Map();
    // Runs this tab asked for (acknowledged here): shown as live even when every event of the
    // run arrives before the thread is drawn, so the view still brings the answer into view.
    this.askedRuns = new Set();
    this.listeners = new Set();
    try {
      for (const m of JSON.parse(localStorage.getItem(this.outboxKey) || '[]')) {
        if (m && m.client_msg_id && m.content) this.outbox.set(m.client_msg_id, { ...m, acked: false, error: null });
      }
    } catch {
      // a corrupt outbox is dropped
    }
  }

  subscribe(fn) {
    this.listeners.add(fn);
  }

  emit(change) {
    for (const fn of this.listeners) fn(change);
  }

  setLastSeq(seq) {
    this.lastSeq = seq;
    localStorage.setItem(this.seqKey, String(seq));
  }

  saveOutbox() {
    const pending = [...this.outbox.values()].filter((m) => !m.acked && !m.error);
    localStorage.setItem(this.outboxKey, JSON.stringify(pending.map(({ client_msg_id, content, thread_id, created_at }) => ({ client_msg_id, content, thread_id, created_at }))));
  }

  /** `connection_ready`: returns true when history must be reloaded over REST. */
  ready(frame) {
    const head = Number(frame.head_seq) || 0;
    if (frame.resync_required || this.lastSeq === null || this.lastSeq > head) {
      const resync = Boolean(frame.resync_required);
      this.setLastSeq(head);
      return resync;
    }
    return false;
  }

  /** A stream event; false when it was a duplicate. */
  applyEvent(ev) {
    if (typeof ev.seq !== 'number') return false;
    if (this.lastSeq !== null && ev.seq <= this.lastSeq) return false;
    this.setLastSeq(ev.seq);
    this.absorb(ev);
    this.emit({ kind: 'event', event: ev });
    return true;
  }

  /** Folds an event (live or from REST history) into the model. */
  absorb(ev) {
    if (ev.type === 'thread_created' && ev.thread) {
      const t = this.threads.get(ev.thread.id);
      if (t) {
        t.title = ev.thread.title;
      } else {
        // Seen from its creation on, so its message list is complete without REST.
        this.threads.set(ev.thread.id, { ...ev.thread, messages: new Map() });
      }
      this.bump(ev.thread.id);
    } else if (ev.type === 'message_created' && ev.message) {
      this.addMessage({ thread_id: ev.thread_id, ...ev.message });
      this.bump(ev.thread_id);
    } else if (AGENT_EVENTS.has(ev.type) && ev.run_id) {
      this.run(ev.run_id, ev.thread_id).add(ev);
    }
  }

  run(id, threadId) {
    let r = this.runs.get(id);
    if (!r) {
      r = new Run(id, threadId);
      this.runs.set(id, r);
    }
    return r;
  }

  addMessage(m) {
    const t = this.threads.get(m.thread_id);
    if (m.client_msg_id) {
      const pending = this.outbox.get(m.client_msg_id);
      if (pending) {
        this.outbox.delete(m.client_msg_id);
        this.saveOutbox();
      }
    }
    if (t && t.messages && !t.messages.has(m.id)) t.messages.set(m.id, m);
  }

  bump(threadId) {
    const i = this.order.indexOf(threadId);
    if (i === 0) return;
    if (i > 0) this.order.splice(i, 1);
    this.order.unshift(threadId);
  }

  /** The thread list from REST, merged with what live events already told. */
  setThreads(list) {
    const restIds = list.map((t) => t.id);
    for (const t of list) {
      const known = this.threads.get(t.id);
      if (known) Object.assign(known, { title: t.title, created_at: t.created_at });
      else this.threads.set(t.id, { ...t, messages: null });
    }
    // Threads only live events know of are newer than the REST answer.
    const liveOnly = this.order.filter((id) => !restIds.includes(id));
    this.order = [...liveOnly, ...restIds];
    this.emit({ kind: 'threads' });
  }

  /** A thread's messages from REST, merged with live ones. */
  setMessages(threadId, list) {
    let t = this.threads.get(threadId);
    if (!t) {
      t = { id: threadId, title: 'Conversation', created_at: null, messages: null };
      this.threads.set(threadId, t);
    }
    const merged = new Map();
    for (const m of list) merged.set(m.id, { thread_id: threadId, ...m });
    for (const [id, m] of t.messages || []) if (!merged.has(id)) merged.set(id, m);
    t.messages = merged;
    for (const m of list) if (m.client_msg_id && this.outbox.has(m.client_msg_id)) this.addMessage(m);
    this.emit({ kind: 'messages', threadId });
  }

  /** A run's stored events from REST. */
  setRunEvents(runId, events) {
    const r = this.run(runId, null);
    let changed = false;
    for (const ev of events) {
      if (AGENT_EVENTS.has(ev.type) && ev.run_id === runId && typeof ev.seq === 'number') changed = r.add(ev) || changed;
    }
    if (changed) this.emit({ kind: 'run', runId });
  }

  /** Forgets loaded history (after `resync_required`); runs are reloaded on demand. */
  resetHistory() {
    for (const t of this.threads.values()) t.messages = null;
    this.runs.clear();
  }

  queue(content, threadId) {
    const client_msg_id = `cm_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 10)}`;
    const m = { client_msg_id, content, thread_id: threadId, created_at: new Date().toISOString(), acked: false, error: null };
    this.outbox.set(client_msg_id, m);
    this.saveOutbox();
    this.emit({ kind: 'outbox' });
    return m;
  }

  /** Messages to (re-)send: queued, not acknowledged, not failed. */
  unsent() {
    return [...this.outbox.values()].filter((m) => !m.acked && !m.error);
  }

  ack(frame) {
    const m = this.outbox.get(frame.client_msg_id);
    if (!m) return null;
    m.acked = true;
    m.thread_id = frame.thread_id;
    m.run_id = frame.run_id;
    if (this.askedRuns.size >= MAX_ASKED_RUNS) this.askedRuns.clear();
    this.askedRuns.add(frame.run_id);
    if (!this.threads.has(frame.thread_id)) {
      this.threads.set(frame.thread_id, { id: frame.thread_id, title: m.content.slice(0, 60), created_at: m.created_at, messages: new Map() });
      this.bump(frame.thread_id);
    }
    this.saveOutbox();
    this.emit({ kind: 'outbox' });
    return m;
  }

  fail(clientMsgId, message) {
    const m = this.outbox.get(clientMsgId);
    if (!m) return;
    m.error = message;
    this.saveOutbox();
    this.emit({ kind: 'outbox' });
  }

  retry(clientMsgId) {
    const m = this.outbox.get(clientMsgId);
    if (m) m.error = null;
    this.saveOutbox();
    this.emit({ kind: 'outbox' });
  }
}
