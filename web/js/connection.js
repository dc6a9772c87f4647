// One WebSocket to the server (PROTOCOL.md §1–§6) that keeps itself connected: jittered
// exponential backoff, resume from the last seen seq, a client heartbeat to notice dead
// links, and plain states for the UI. What to do with frames is the caller's business.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

/** Thrown by `urlFor` when retrying cannot help (e.g. the token was refused). */
export class FatalConnectError extends Error {}

export class Connection {
  /**
   * @param urlFor async () => ws URL (may fetch a ticket); throws FatalConnectError to stop.
   * @param onFrame (frame) => void, for every parsed frame but `pong`.
   * @param onState (state, detail) => void; states: connecting, open, waiting, failed.
   */
  constructor({ urlFor, onFrame, onState, random = Math.random }) {
    this.urlFor = urlFor;
    this.onFrame = onFrame;
    this.onState = onState;
    this.random = random;
    this.ws = null;
    this.attempt = 0;
    this.stopped = true;
    this.retryTimer = null;
    this.beatTimer = null;
    this.lastRx = 0;
    this.ready = false;
    window.addEventListener('online', () => {
      if (!this.stopped && !this.ws) this.connectNow();
    });
  }

  start() {
    this.stopped = false;
    this.connectNow();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopHeartbeat();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'bye');
  }

  get isOpen() {
    return Boolean(this.ws && this.ready && this.ws.readyState === WebSocket.OPEN);
  }

  /** Sends a client frame; false when not connected (the caller keeps it for later). */
  send(frame) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Cuts the socket as a network failure would (used by tests and "Reconnect now"). */
  drop() {
    if (this.ws) this.ws.close(4000, 'dropped by client');
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.attempt = Math.min(this.attempt, 1);
    this.connect();
  }

  async connect() {
    if (this.stopped) return;
    this.onState('connecting', { attempt: this.attempt });
    let url;
    try {
      url = await this.urlFor();
    } catch (e) {
      if (e instanceof FatalConnectError) {
        this.onState('failed', { message: e.message });
        return;
      }
      this.retry(e && e.message ? e.message : 'cannot reach the server');
      return;
    }
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(url, ['apogee.v1']);
    } catch (e) {
      this.retry('cannot open a WebSocket');
      return;
    }
    this.ws = ws;
    this.ready = false;
    ws.addEventListener('message', (m) => this.message(ws, m));
    ws.addEventListener('close', (ev) => this.closed(ws, ev));
  }

  message(ws, m) {
    if (ws !== this.ws) return;
    this.lastRx = Date.now();
    let frame;
    try {
      frame = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.type !== 'string' || frame.type === 'pong') return;
    if (frame.type === 'connection_ready') {
      this.ready = true;
      this.attempt = 0;
      this.startHeartbeat(Number(frame.heartbeat_ms) || 25000);
      this.onFrame(frame);
      this.onState('open', frame);
      return;
    }
    this.onFrame(frame);
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    this.stopHeartbeat();
    if (this.stopped) return;
    if (ev.code === 4001) {
      this.onState('failed', { code: ev.code, message: 'Your token expired: sign in with a fresh one.', expired: true });
      return;
    }
    const why = {
      1008: 'the server closed the connection (too many errors)',
      1009: 'a message was too large',
      1011: 'the server had an internal error',
      1012: 'the server is restarting',
      1013: 'the server asked to reconnect',
    }[ev.code] || 'the connection was lost';
    // After abuse (1008) wait longer before trying again.
    if (ev.code === 1008) this.attempt = Math.max(this.attempt, 4);
    this.retry(why);
  }

  /** Full-jitter backoff: a random delay in [d/2, d], d doubling per attempt up to a cap. */
  retry(reason) {
    if (this.stopped) return;
    const cap = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + (this.random() * cap) / 2);
    this.attempt += 1;
    this.onState('waiting', { reason, delayMs: delay, at: Date.now() + delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startHeartbeat(ms) {
    this.stopHeartbeat();
    this.lastRx = Date.now();
    this.beatTimer = setInterval(() => {
      const ws = this.ws;
      if (!ws) return;
      if (Date.now() - this.lastRx > 2 * ms) {
        // Silent for two periods: the link is dead even if the browser has not noticed.
        this.ws = null;
        this.ready = false;
        this.stopHeartbeat();
        ws.close(4000, 'heartbeat timeout');
        this.retry('no answer from the server');
        return;
      }
      this.send({ type: 'ping' });
    }, ms);
  }

  stopHeartbeat() {
    clearInterval(this.beatTimer);
    this.beatTimer = null;
  }
}
