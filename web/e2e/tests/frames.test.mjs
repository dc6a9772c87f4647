// The page's frame handling (web/js/frames.js) with the real client store, without a browser:
// what each frame does to the store and what it asks of the page.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

// The store keeps the last seq and the outbox in localStorage; node has none.
const storage = new Map();
globalThis.localStorage = {
  getItem: (k) => (storage.has(k) ? storage.get(k) : null),
  setItem: (k, v) => storage.set(k, String(v)),
  removeItem: (k) => storage.delete(k),
};

const { Store } = await import('../../js/state.js');
const { applyFrame } = await import('../../js/frames.js');

/** A page that records what frames ask of it. */
function fakePage({ current = null, shown = null } = {}) {
  const calls = [];
  const page = {
    calls,
    current,
    shown,
    currentThread: () => page.current,
    viewThreadId: () => page.shown,
    openThread: (id) => {
      calls.push(['openThread', id]);
      page.current = id;
      page.shown = id;
    },
    resetHistory: () => calls.push(['resetHistory']),
    flush: () => calls.push(['flush']),
    render: () => calls.push(['render']),
    announce: (text) => calls.push(['announce', text]),
    later: (ms, fn) => calls.push(['later', ms, fn]),
  };
  return page;
}

const names = (page) => page.calls.map((c) => c[0]);

beforeEach(() => storage.clear());

test('connection_ready sends the outbox, and reloads history only when the server says so', () => {
  const store = new Store('u1');
  const page = fakePage();
  applyFrame({ type: 'connection_ready', head_seq: 5 }, store, page);
  assert.deepEqual(names(page), ['flush']);
  assert.equal(store.lastSeq, 5);

  const later = fakePage();
  applyFrame({ type: 'connection_ready', head_seq: 9, resync_required: true }, store, later);
  assert.deepEqual(names(later), ['resetHistory', 'flush']);
  assert.equal(store.lastSeq, 9);
});

test('an ack from the new-chat view opens the new thread; in an open thread it only renders', () => {
  const store = new Store('u1');
  const m = store.queue('Analyze my AI costs', null);
  const page = fakePage();
  applyFrame({ type: 'message_ack', client_msg_id: m.client_msg_id, thread_id: 'th_1', run_id: 'run_1', message_id: 'msg_1' }, store, page);
  assert.deepEqual(page.calls, [['openThread', 'th_1']]);
  assert.equal(store.outbox.get(m.client_msg_id).acked, true);

  const second = store.queue('and last week?', 'th_1');
  const inThread = fakePage({ current: 'th_1', shown: 'th_1' });
  applyFrame({ type: 'message_ack', client_msg_id: second.client_msg_id, thread_id: 'th_1', run_id: 'run_2', message_id: 'msg_2' }, store, inThread);
  assert.deepEqual(names(inThread), ['render']);
});

test('a rate-limited message is sent again later; a refused one is marked failed; others are announced', () => {
  const store = new Store('u1');
  const m = store.queue('hello', null);
  const page = fakePage();
  applyFrame({ type: 'error', code: 'rate_limited', client_msg_id: m.client_msg_id, retry_after_ms: 1200 }, store, page);
  assert.deepEqual(page.calls.map((c) => c.slice(0, 2)), [['later', 1200]]);
  page.calls[0][2]();
  assert.deepEqual(names(page), ['later', 'flush']);
  assert.equal(store.unsent().length, 1, 'still queued');

  // A retry hint too small or missing is not a busy loop.
  const quick = fakePage();
  applyFrame({ type: 'error', code: 'rate_limited', client_msg_id: m.client_msg_id, retry_after_ms: 1 }, store, quick);
  assert.equal(quick.calls[0][1], 500);

  applyFrame({ type: 'error', code: 'bad_request', message: 'content too long', client_msg_id: m.client_msg_id }, store, page);
  assert.equal(store.outbox.get(m.client_msg_id).error, 'content too long');
  assert.equal(store.unsent().length, 0);

  const other = fakePage();
  applyFrame({ type: 'error', code: 'internal', message: 'try again' }, store, other);
  assert.deepEqual(other.calls, [['announce', 'The server reported an error: try again']]);
});

test('a replayed message of ours from the new-chat view takes the view to its thread, once', () => {
  const store = new Store('u1');
  const m = store.queue('Which feature spends most?', null);
  const page = fakePage();
  const created = { seq: 3, ts: '2026-11-30T00:00:00Z', thread_id: 'th_9', type: 'message_created', message: { id: 'msg_1', role: 'user', content: m.content, client_msg_id: m.client_msg_id } };
  applyFrame(created, store, page);
  assert.deepEqual(page.calls, [['openThread', 'th_9']]);
  assert.equal(store.outbox.has(m.client_msg_id), false, 'the outbox entry is settled');
  // The same event again (the wire is at-least-once) changes nothing.
  const again = fakePage();
  applyFrame(created, store, again);
  assert.deepEqual(again.calls, []);
  assert.equal(store.lastSeq, 3);
});

test('agent events go to their run; frames without a seq are not stream events', () => {
  const store = new Store('u1');
  const page = fakePage({ current: 'th_1', shown: 'th_1' });
  applyFrame({ seq: 1, ts: '2026-11-30T00:00:00Z', thread_id: 'th_1', run_id: 'run_1', type: 'agent_started', agent: 'supervisor' }, store, page);
  applyFrame({ seq: 2, ts: '2026-11-30T00:00:01Z', thread_id: 'th_1', run_id: 'run_1', type: 'agent_completed', agent: 'supervisor', status: 'ok', summary: 'done', data: {} }, store, page);
  applyFrame({ type: 'pong' }, store, page);
  assert.equal(store.runs.get('run_1').view().status, 'ok');
  assert.equal(store.lastSeq, 2);
  assert.deepEqual(page.calls, []);
});
