// Observation points and cuts for the end-to-end tests (web/e2e), installed only when the test
// harness sets `window.__apogeeTest` before the page loads: nothing here runs for a real user.
// They wrap the connection from outside rather than sit in the page's own paths: every frame
// is recorded as it arrives, before the page drops seqs it has already seen, so an event the
// server delivers twice shows here even though the page shows it once.

/** Installs the taps on `conn` and exposes them (and `store`) as `window.__apogee`. */
export function installTestTaps({ store, conn }) {
  const received = [];
  const readyLog = [];
  const ackLog = [];
  const eventHooks = [];
  const dropWhen = [];
  let dropAfterNextSend = false;

  const onFrame = conn.onFrame;
  conn.onFrame = (f) => {
    if (f.type === 'connection_ready') readyLog.push({ head_seq: f.head_seq, replayed: f.replayed, resync_required: f.resync_required });
    if (f.type === 'message_ack') ackLog.push({ client_msg_id: f.client_msg_id, run_id: f.run_id, duplicate: f.duplicate });
    if (typeof f.seq === 'number') received.push({ seq: f.seq, type: f.type, agent: f.agent ?? null, run_id: f.run_id ?? null });
    onFrame(f);
    if (typeof f.seq !== 'number') return;
    for (const fn of eventHooks) fn(f);
    for (let k = dropWhen.length - 1; k >= 0; k -= 1) {
      if (Object.entries(dropWhen[k]).every(([key, v]) => f[key] === v)) {
        dropWhen.splice(k, 1);
        conn.drop();
      }
    }
  };

  // The link dies right after a user message is sent, before its ack can arrive.
  const send = conn.send.bind(conn);
  conn.send = (frame) => {
    const sent = send(frame);
    if (sent && frame.type === 'user_message' && dropAfterNextSend) {
      dropAfterNextSend = false;
      conn.drop();
    }
    return sent;
  };

  window.__apogee = {
    store,
    conn,
    drop: () => conn.drop(),
    dropWhen: (spec) => dropWhen.push(spec),
    /** Every stream event received, in arrival order, duplicates included. */
    received: () => received.map((e) => ({ ...e })),
    readyLog: () => [...readyLog],
    onEvent: (fn) => eventHooks.push(fn),
    ackLog: () => [...ackLog],
    dropAfterNextSend: () => {
      dropAfterNextSend = true;
    },
  };
}
