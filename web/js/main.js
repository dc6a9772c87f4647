// Entry point: learns the server's auth mode, signs the user in (a demo name, the
// organisation's identity provider, or a pasted token), then wires the REST client, the
// self-healing WebSocket, the stream model and the views together.

import { byId, h, clear, announce } from './dom.js';
import { dateTime } from './format.js';
import { Api, ApiError, fetchConfig, fetchSession, signOut } from './api.js';
import { Connection, FatalConnectError } from './connection.js';
import { Store } from './state.js';
import { ThreadView } from './thread_view.js';
import { loadIdentity, saveIdentity, forgetIdentity, validDemoName, demoIdentity, jwtIdentity, sessionIdentity, initials } from './identity.js';
import { installTestTaps } from './test_taps.js';
import { installBudgets } from './budgets.js';
import { applyFrame } from './frames.js';

const el = {
  signin: byId('signin'),
  signinNotice: byId('signin-notice'),
  signinError: byId('signin-error'),
  oidcSignin: byId('oidc-signin'),
  oidcLogin: byId('oidc-login'),
  tokenToggle: byId('token-toggle'),
  demoForm: byId('demo-form'),
  demoName: byId('demo-name'),
  jwtForm: byId('jwt-form'),
  jwtToken: byId('jwt-token'),
  jwtError: byId('jwt-error'),
  chat: byId('chat'),
  account: byId('account'),
  identity: byId('identity-button'),
  accountAvatar: byId('account-avatar'),
  accountName: byId('account-name'),
  accountOrg: byId('account-org'),
  accountMenu: byId('account-menu'),
  menuName: byId('menu-name'),
  menuDetail: byId('menu-detail'),
  signOut: byId('sign-out'),
  signOutEverywhere: byId('sign-out-everywhere'),
  signOutEverywhereHelp: byId('sign-out-everywhere-help'),
  connStatus: byId('conn-status'),
  connText: byId('conn-text'),
  connCountdown: byId('conn-countdown'),
  connRetry: byId('conn-retry'),
  threadList: byId('thread-list'),
  threadEmpty: byId('thread-empty'),
  newChat: byId('new-chat'),
  sidebar: byId('sidebar'),
  threadsToggle: byId('threads-toggle'),
  composer: byId('composer'),
  input: byId('composer-input'),
  suggestions: byId('suggestions'),
  messages: byId('messages'),
  conversation: byId('conversation'),
  welcome: byId('welcome'),
};

// What the sign-in screen says after the provider sent the browser back with a failure
// (`#signin_error=CODE` from /auth/callback); the reason itself is in the server's log.
const SIGNIN_ERRORS = {
  state: 'That sign-in could not be completed: it was started in another window or tampered with. Sign in again.',
  expired: 'That sign-in took too long or was already used. Sign in again.',
  denied: 'Sign-in was cancelled or refused at {provider}.',
  token: '{provider} answered with a sign-in this server cannot accept. Ask your administrator to check the settings.',
  org: 'Your account is not part of an organisation on this server. Ask your administrator.',
  provider: '{provider} cannot be reached right now. Try again in a moment.',
  busy: 'Too many sign-in attempts from here. Wait a minute and try again.',
};
const NOTICE_KEY = 'apogee.signinNotice';

/** A sign-in failure sent back in the URL, read once and removed from the address bar. */
function takeSigninError(config) {
  const code = new URLSearchParams(location.hash.slice(1)).get('signin_error');
  if (code === null) return null;
  history.replaceState(null, '', location.pathname);
  const provider = config.oidc ? config.oidc.provider : 'The identity provider';
  return (SIGNIN_ERRORS[code] || 'Sign-in failed on the server. Try again.').replace('{provider}', provider);
}

async function boot() {
  const config = await fetchConfig();
  const error = takeSigninError(config);
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  if (config.oidc) {
    let session = null;
    try {
      session = sessionIdentity(await fetchSession());
    } catch (e) {
      return showSignin(config, { error: e.message });
    }
    if (session) return start(config, session);
    // The paste-a-token form is a developer setting; a token pasted with it still counts.
    const pasted = config.token_form ? loadIdentity('jwt') : null;
    if (pasted) return start(config, pasted);
    return showSignin(config, { error, notice });
  }
  const identity = loadIdentity(config.auth);
  if (identity) start(config, identity);
  else showSignin(config, { error, notice });
}

function showText(node, text) {
  node.hidden = !text;
  node.textContent = text || '';
}

/** The sign-in screen, with an `error` or a `notice` (e.g. "You signed out.") above it. */
function showSignin(config, { error = null, notice = null } = {}) {
  el.chat.hidden = true;
  el.signin.hidden = false;
  el.account.hidden = true;
  el.threadsToggle.hidden = true;
  el.sidebar.hidden = true;
  setConn('idle', 'Not signed in');
  showText(el.signinError, error);
  showText(el.signinNotice, error ? null : notice);
  const oidc = Boolean(config.oidc);
  el.oidcSignin.hidden = !oidc;
  el.demoForm.hidden = config.auth !== 'demo';
  el.jwtForm.hidden = config.auth === 'demo' || oidc;
  el.jwtError.hidden = true;
  if (oidc) {
    el.oidcLogin.textContent = `Sign in with ${config.oidc.provider}`;
    el.oidcLogin.href = config.oidc.login_url || '/auth/login';
    el.tokenToggle.hidden = !config.token_form;
    el.tokenToggle.setAttribute('aria-expanded', 'false');
    el.tokenToggle.onclick = () => {
      const open = el.jwtForm.hidden;
      el.jwtForm.hidden = !open;
      el.tokenToggle.setAttribute('aria-expanded', String(open));
      if (open) el.jwtToken.focus();
    };
  }
  const form = config.auth === 'demo' ? el.demoForm : el.jwtForm;
  form.onsubmit = (ev) => {
    ev.preventDefault();
    let identity = null;
    if (config.auth === 'demo') {
      const name = el.demoName.value.trim();
      if (!validDemoName(name)) {
        el.demoName.setCustomValidity('Use letters, digits, - and _ only (up to 64).');
        el.demoName.reportValidity();
        return;
      }
      identity = demoIdentity(name);
    } else {
      identity = jwtIdentity(el.jwtToken.value.trim());
      if (!identity) {
        el.jwtError.hidden = false;
        el.jwtError.textContent = 'That does not look like a JWT with a `sub` claim.';
        return;
      }
    }
    saveIdentity(identity);
    start(config, identity);
  };
  el.demoName.oninput = () => el.demoName.setCustomValidity('');
  (config.auth === 'demo' ? el.demoName : oidc ? el.oidcLogin : el.jwtToken).focus();
}

function setConn(state, text) {
  el.connStatus.dataset.state = state;
  // Only a changed text is written: the status region announces every change.
  if (el.connText.textContent !== text) el.connText.textContent = text;
  el.connCountdown.textContent = '';
  el.connRetry.hidden = state !== 'waiting';
}

/** The top bar's account button and its menu: who is signed in, in which org; sign-out. */
function showAccount(identity, leave) {
  el.account.hidden = false;
  el.accountAvatar.textContent = initials(identity.label);
  el.accountName.textContent = identity.label;
  el.accountOrg.textContent = identity.org || '';
  el.accountOrg.hidden = !identity.org;
  el.identity.setAttribute('aria-label', `Signed in as ${identity.label}${identity.org ? `, organisation ${identity.org}` : ''}. Account menu`);
  el.menuName.textContent = identity.label;
  const detail = [identity.email, identity.org ? `Organisation ${identity.org}` : ''].filter(Boolean).join(' · ');
  el.menuDetail.textContent = detail;
  const session = identity.mode === 'session';
  el.signOutEverywhere.hidden = !session;
  el.signOutEverywhereHelp.hidden = !session;
  const setOpen = (open) => {
    el.accountMenu.hidden = !open;
    el.identity.setAttribute('aria-expanded', String(open));
  };
  setOpen(false);
  el.identity.onclick = () => {
    const open = el.accountMenu.hidden;
    setOpen(open);
    if (open) el.signOut.focus();
  };
  el.signOut.onclick = () => leave(false);
  el.signOutEverywhere.onclick = () => leave(true);
  document.addEventListener('click', (ev) => {
    if (!el.account.contains(ev.target)) setOpen(false);
  });
  el.account.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !el.accountMenu.hidden) {
      setOpen(false);
      el.identity.focus();
    }
  });
}

function start(config, identity) {
  el.signin.hidden = true;
  el.chat.hidden = false;
  el.threadsToggle.hidden = false;
  el.sidebar.hidden = false;
  showAccount(identity, async (everywhere) => {
    conn.stop();
    if (identity.mode === 'session') {
      try {
        await signOut(identity, everywhere);
      } catch {
        // Reloading asks the server again: a session it still holds shows up there.
      }
    }
    forgetIdentity(identity.mode);
    sessionStorage.setItem(NOTICE_KEY, everywhere ? 'You signed out on every device.' : 'You signed out.');
    location.hash = '';
    location.reload();
  });

  // The longest message the server takes: the composer stops there rather than be refused.
  const maxChars = config.limits.message_chars;
  el.input.maxLength = maxChars;
  const api = new Api(identity);
  const store = new Store(identity.key);
  installBudgets({ api, store, key: identity.key, topbar: document.querySelector('.topbar') });
  const fetchedRuns = new Set();
  let currentThread = null;
  let waitTimer = null;

  const view = new ThreadView({
    list: el.messages,
    scroller: el.conversation,
    welcome: el.welcome,
    onCancel: (runId) => conn.send({ type: 'cancel_run', run_id: runId }),
    // A follow-up suggestion asks itself in the open thread, as if typed.
    onAsk: (text) => send(text),
    onRetry: (id) => {
      store.retry(id);
      flush();
    },
    needRun: (runId) => {
      if (fetchedRuns.has(runId)) return;
      fetchedRuns.add(runId);
      api.runEvents(runId).then(
        (events) => store.setRunEvents(runId, events),
        () => fetchedRuns.delete(runId),
      );
    },
  });

  // Rendering is batched to one pass per frame, however many events arrive.
  let scheduled = false;
  const render = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      renderThreads();
      view.render(store);
    });
  };
  store.subscribe(render);

  let threadsShown = '';
  function renderThreads() {
    // Rebuilt only when something visible changed, so keyboard focus in the list survives
    // the stream of run events.
    const shown = JSON.stringify([currentThread, store.order.map((id) => [id, store.threads.get(id)?.title])]);
    if (shown === threadsShown) return;
    threadsShown = shown;
    const hadFocus = el.threadList.contains(document.activeElement) ? document.activeElement.dataset.threadId : null;
    clear(el.threadList);
    for (const id of store.order) {
      const t = store.threads.get(id);
      if (!t) continue;
      const button = h('button', { type: 'button', class: 'thread-link', 'aria-current': id === currentThread ? 'page' : null, 'data-thread-id': id }, h('span', { class: 'thread-title' }, t.title || 'Conversation'), h('span', { class: 'thread-date muted small' }, dateTime(t.created_at)));
      button.addEventListener('click', () => {
        openThread(id);
        closeSidebar();
        el.input.focus();
      });
      el.threadList.append(h('li', {}, button));
      if (id === hadFocus) button.focus();
    }
    el.threadEmpty.hidden = store.order.length > 0;
  }

  async function loadThreads() {
    try {
      store.setThreads(await api.threads());
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return signedOut(e.message);
      announce('Could not load conversations.');
    }
  }

  async function loadMessages(threadId) {
    try {
      store.setMessages(threadId, await api.messages(threadId));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        if (rememberedThread() === threadId) rememberThread(null);
        openThread(null);
        return;
      }
      if (e instanceof ApiError && e.status === 401) signedOut(e.message);
    }
  }

  // The conversation last open in this browser, per signed-in user: `/` reopens it.
  const lastThreadKey = `apogee.lastThread.${identity.key}`;
  const rememberThread = (id) => {
    try {
      if (id) localStorage.setItem(lastThreadKey, id);
      else localStorage.removeItem(lastThreadKey);
    } catch {
      // Storage may be full or disabled: the address bar still names the thread.
    }
  };
  const rememberedThread = () => {
    try {
      return localStorage.getItem(lastThreadKey);
    } catch {
      return null;
    }
  };

  function openThread(id) {
    currentThread = id;
    if (id) rememberThread(id);
    history.replaceState(null, '', id ? `#thread=${encodeURIComponent(id)}` : location.pathname);
    view.open(id);
    const t = id ? store.threads.get(id) : null;
    if (id && (!t || !t.messages)) loadMessages(id);
    render();
  }

  function signedOut(message) {
    conn.stop();
    forgetIdentity(identity.mode);
    const error = identity.mode === 'session' ? 'Your session ended. Sign in again.' : `The server refused these credentials: ${message}`;
    showSignin(config, { error });
  }

  function flush() {
    for (const m of store.unsent()) {
      if (!conn.send({ type: 'user_message', client_msg_id: m.client_msg_id, content: m.content, thread_id: m.thread_id ?? null })) break;
    }
    render();
  }

  const page = {
    currentThread: () => currentThread,
    viewThreadId: () => view.threadId,
    openThread,
    resetHistory: () => {
      store.resetHistory();
      fetchedRuns.clear();
      view.open(undefined);
      openThread(currentThread);
      loadThreads();
    },
    flush,
    render,
    announce,
    later: (ms, fn) => setTimeout(fn, ms),
  };
  const onFrame = (f) => applyFrame(f, store, page);

  function onState(state, detail) {
    clearInterval(waitTimer);
    if (state === 'connecting') setConn('connecting', detail.attempt ? 'Reconnecting…' : 'Connecting…');
    else if (state === 'open') setConn('open', 'Connected · live');
    else if (state === 'failed') {
      setConn('failed', detail.message);
      if (detail.expired) signedOut('the token expired');
    } else if (state === 'waiting') {
      setConn('waiting', `Offline: ${detail.reason}.`);
      const tick = () => {
        const left = Math.max(0, Math.ceil((detail.at - Date.now()) / 1000));
        el.connCountdown.textContent = ` Retrying in ${left} s`;
      };
      tick();
      waitTimer = setInterval(tick, 1000);
    }
  }

  const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const conn = new Connection({
    onFrame,
    onState,
    urlFor: async () => {
      const q = new URLSearchParams();
      if (identity.mode === 'demo') {
        q.set('user', identity.user);
      } else if (identity.mode === 'session') {
        // The cookie goes with the handshake (the server checks its Origin); asking first
        // tells an ended session from a lost connection, which a failed handshake cannot.
        const now = sessionIdentity(await fetchSession());
        if (!now) {
          signedOut('session ended');
          throw new FatalConnectError('Signed out.');
        }
        if (now.key !== identity.key) {
          // Another tab signed in as someone else: start over as them.
          location.reload();
          throw new FatalConnectError('Signed in as someone else.');
        }
      } else {
        // Every server in JWT mode issues tickets (PROTOCOL.md §1): any other failure is
        // retried like a lost connection, never taken for a server without live updates.
        let ticket;
        try {
          ticket = await api.wsTicket();
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) {
            signedOut(e.message);
            throw new FatalConnectError('Signed out.');
          }
          throw e;
        }
        if (!ticket || typeof ticket.ticket !== 'string') throw new FatalConnectError('The server sent no WebSocket ticket.');
        q.set('ticket', ticket.ticket);
      }
      if (store.lastSeq !== null) q.set('last_seq', String(store.lastSeq));
      const query = q.toString();
      return query ? `${wsBase}?${query}` : wsBase;
    },
  });

  el.connRetry.addEventListener('click', () => conn.connectNow());

  // The one test switch: the end-to-end harness sets it before the page loads.
  if (window.__apogeeTest === true) installTestTaps({ store, conn });

  function send(text) {
    const content = text.trim();
    if (!content) return;
    store.queue([...content].slice(0, maxChars).join(''), currentThread);
    el.input.value = '';
    autosize();
    view.following = true;
    flush();
  }

  function autosize() {
    el.input.style.height = 'auto';
    el.input.style.height = `${Math.min(200, el.input.scrollHeight)}px`;
  }

  el.composer.onsubmit = (ev) => {
    ev.preventDefault();
    send(el.input.value);
  };
  el.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      send(el.input.value);
    }
  });
  el.input.addEventListener('input', autosize);
  for (const chip of el.suggestions.querySelectorAll('button')) chip.addEventListener('click', () => send(chip.textContent));
  el.newChat.addEventListener('click', () => {
    rememberThread(null);
    openThread(null);
    closeSidebar();
    el.input.focus();
  });
  el.threadsToggle.addEventListener('click', () => {
    const open = !el.sidebar.classList.contains('open');
    el.sidebar.classList.toggle('open', open);
    el.threadsToggle.setAttribute('aria-expanded', String(open));
    if (open) el.newChat.focus();
  });
  function closeSidebar() {
    el.sidebar.classList.remove('open');
    el.threadsToggle.setAttribute('aria-expanded', 'false');
  }
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && el.sidebar.classList.contains('open')) {
      closeSidebar();
      el.threadsToggle.focus();
    }
  });

  const fromHash = new URLSearchParams(location.hash.slice(1)).get('thread');
  openThread(fromHash || rememberedThread() || null);
  loadThreads();
  conn.start();
}

boot();
