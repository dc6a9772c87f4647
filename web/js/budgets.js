// Budgets in the UI: a "Budgets" button in the top bar with an unread badge, a panel listing
// the org's budgets with progress bars (GET /api/budgets), and a toast for each live
// `budget_alert` of the stream. Owns its DOM and stylesheet (web/budgets.css), so the page
// needs one call:
// installBudgets({ api, store, key, topbar }).

import { h, clear, announce } from './dom.js';

/** Alerts older than this when they arrive (a replay after days offline) only count as unread. */
const TOAST_MAX_AGE_MS = 10 * 60 * 1000;
const TOAST_MS = 12000;
const TOASTS_SHOWN = 3;
/** Stream events shown as toasts and counted as unread. */
const ALERTS = new Set(['budget_alert', 'anomaly_alert']);
/** The chat's budget tools that change budgets. */
const BUDGET_TOOLS = new Set(['set_budget', 'delete_budget']);


/** The filled part of a progress bar, sized through the CSSOM (allowed by the CSP). */
function bar(pct) {
  const fill = h('span', {});
  fill.style.width = `${pct}%`;
  return fill;
}

function usd(v) {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(v || 0);
}

export function installBudgets({ api, store, key, topbar }) {
  // A stylesheet of its own (the page's CSP allows no inline styles).
  document.head.append(h('link', { rel: 'stylesheet', href: '/assets/budgets.css' }));

  const seenKey = `apogee.budgets.seen.${key}`;
  let seen = Number(localStorage.getItem(seenKey) || 0);
  let newest = seen;
  let unread = 0;

  const badge = h('span', { class: 'budgets-badge', hidden: true, 'aria-hidden': 'true' });
  const button = h('button', { type: 'button', class: 'secondary small-button budgets-button', 'aria-expanded': 'false', 'aria-controls': 'budgets-panel', 'data-testid': 'budgets-button' }, 'Budgets', badge);
  const list = h('ul', { class: 'budgets-list' });
  const status = h('p', { class: 'muted small' });
  const panel = h('section', { id: 'budgets-panel', class: 'budgets-panel', hidden: true, 'aria-label': 'Budgets' }, h('h2', {}, 'Budgets this period'), status, list);
  const toasts = h('div', { class: 'budget-toasts', role: 'status', 'aria-live': 'polite', 'data-testid': 'budget-toasts' });
  const account = topbar.querySelector('#account');
  topbar.insertBefore(button, account);
  document.body.append(panel, toasts);

  function showUnread() {
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? '99+' : String(unread);
    button.setAttribute('aria-label', unread ? `Budgets, ${unread} new alert${unread === 1 ? '' : 's'}` : 'Budgets');
  }

  function toast(title, message) {
    const close = h('button', { type: 'button', 'aria-label': 'Dismiss' }, '×');
    const t = h('div', { class: 'budget-toast', 'data-testid': 'budget-toast' }, h('strong', {}, title), message, close);
    close.addEventListener('click', () => t.remove());
    toasts.append(t);
    while (toasts.children.length > TOASTS_SHOWN) toasts.firstElementChild.remove();
    setTimeout(() => t.remove(), TOAST_MS);
  }

  store.subscribe((change) => {
    if (change.kind !== 'event') return;
    // A budget set, changed or removed from the chat shows at once in the open panel.
    if (change.event.type === 'tool_completed' && BUDGET_TOOLS.has(change.event.tool)) {
      if (!panel.hidden) load();
      return;
    }
    if (!ALERTS.has(change.event.type) || !change.event.alert) return;
    const ev = change.event;
    if (ev.seq <= seen) return;
    newest = Math.max(newest, ev.seq);
    unread += 1;
    showUnread();
    const age = Date.now() - Date.parse(ev.ts);
    const title = ev.type === 'budget_alert' ? `Budget alert: ${ev.alert.budget.name}` : `Spend anomaly on ${ev.alert.day}`;
    if (!(age > TOAST_MAX_AGE_MS)) toast(title, ev.alert.message);
    if (!panel.hidden) load();
  });

  async function load() {
    status.textContent = 'Loading…';
    let body;
    try {
      body = await api.request('GET', '/api/budgets');
    } catch (e) {
      status.textContent = `Could not load budgets: ${e.message}`;
      return;
    }
    const budgets = (body && body.budgets) || [];
    clear(list);
    status.textContent = budgets.length ? '' : 'No budgets yet. Ask the chat (“set a monthly budget of $2,000 for support-bot”) or POST /api/budgets.';
    for (const b of budgets) {
      const c = b.current || {};
      const pct = Math.max(0, Math.min(100, c.percent || 0));
      list.append(
        h('li', { class: 'budget-row', 'data-state': c.state || 'ok' },
          h('div', { class: 'budget-head' }, h('strong', {}, b.name), h('span', {}, `${usd(c.spent_usd)} of ${usd(b.amount_usd)}`)),
          h('div', { class: 'budget-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(Math.round(pct)), 'aria-label': `${b.name}: ${Math.round(c.percent || 0)}% spent` }, bar(pct)),
          h('div', { class: 'budget-meta' }, `${b.period} · ${Math.round(c.percent || 0)}% · forecast ${usd(c.forecast_usd)} · ${(c.state || 'ok').replace('_', ' ')}`),
        ),
      );
    }
  }

  button.addEventListener('click', () => {
    const open = panel.hidden;
    panel.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) {
      seen = newest;
      localStorage.setItem(seenKey, String(seen));
      unread = 0;
      showUnread();
      load();
      announce('Budgets opened.');
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !panel.hidden) {
      panel.hidden = true;
      button.setAttribute('aria-expanded', 'false');
      button.focus();
    }
  });
  showUnread();
}
