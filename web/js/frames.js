// What each frame from the server does to the page: the one reader of frames. It changes the
// store and asks the page for what only the page can do (open a thread, reload history, send
// the outbox, say something to the user), so it runs without a browser in tests
// (web/e2e/tests/frames.test.mjs).

/**
 * The page as frames see it:
 * - `currentThread()`: the thread the user has open (null: a new chat);
 * - `viewThreadId()`: the thread the view shows (null: new chat, undefined: being reset);
 * - `openThread(id)`, `resetHistory()` (forget what was loaded, reload it over REST),
 *   `flush()` (send the outbox), `render()`, `announce(text)`, `later(ms, fn)`.
 * @typedef {object} Page
 */

/** How long a message refused as `rate_limited` waits before the outbox is sent again, at least. */
const MIN_RETRY_MS = 500;

/** Applies one frame. @param {object} f the parsed frame; @param {import('./state.js').Store} store; @param {Page} page */
export function applyFrame(f, store, page) {
  if (f.type === 'connection_ready') {
    // The server no longer has the events we missed: history comes from REST instead.
    if (store.ready(f)) page.resetHistory();
    page.flush();
    return;
  }
  if (f.type === 'message_ack') {
    const m = store.ack(f);
    if (m && page.currentThread() === null && page.viewThreadId() === null) page.openThread(f.thread_id);
    else page.render();
    return;
  }
  if (f.type === 'error') {
    if (f.client_msg_id && f.code === 'rate_limited') {
      page.later(Math.max(MIN_RETRY_MS, Number(f.retry_after_ms) || 1000), () => page.flush());
    } else if (f.client_msg_id) {
      store.fail(f.client_msg_id, f.message || f.code);
    } else {
      page.announce(`The server reported an error: ${f.message || f.code}`);
    }
    return;
  }
  // A message sent from the new-chat view takes the view to its thread, whichever comes
  // first: its ack, or (after a reconnect) its replayed message_created.
  const mine = f.type === 'message_created' && f.message && f.message.client_msg_id ? store.outbox.get(f.message.client_msg_id) : null;
  const follow = Boolean(mine && (mine.thread_id ?? null) === null && page.currentThread() === null && page.viewThreadId() === null);
  if (typeof f.seq === 'number' && store.applyEvent(f) && follow) page.openThread(f.thread_id);
}
