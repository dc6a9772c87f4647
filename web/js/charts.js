// Hand-written SVG charts of a report's structured data (the supervisor's
// `agent_completed.data`). Each chart is drawn at its container's real pixel width, and drawn
// again when that width changes, so text keeps its size from phone to desktop.

import { h, s, clear } from './dom.js';
import { usd, usdShort, count } from './format.js';
import { plainText } from './markdown.js';

const CHAR_PX = 7.2;

function fit(text, px) {
  const max = Math.max(4, Math.floor(px / CHAR_PX));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A figure whose SVG is drawn by `draw(width)` now and on every width change. */
function responsive(className, title, caption, draw) {
  const body = h('div', { class: 'chart-body' });
  const fig = h('figure', { class: `chart ${className}` }, h('figcaption', {}, h('span', { class: 'chart-title' }, title), caption ? h('span', { class: 'chart-caption' }, caption) : null), body);
  let drawn = 0;
  const render = () => {
    const width = Math.floor(body.clientWidth || 0);
    if (!width || Math.abs(width - drawn) < 4) return;
    drawn = width;
    clear(body).append(draw(width));
  };
  if (typeof ResizeObserver === 'function') new ResizeObserver(render).observe(body);
  requestAnimationFrame(render);
  return fig;
}

/** Horizontal bars: a label line above each bar, the value at its end. */
function bars(rows, width, { barClass = 'chart-bar-model', valueText }) {
  const rowH = 40;
  const max = Math.max(...rows.map((r) => r.value), 0) || 1;
  const valueW = 86;
  const barMax = Math.max(40, width - valueW - 4);
  const svg = s('svg', { width, height: rows.length * rowH, viewBox: `0 0 ${width} ${rows.length * rowH}`, class: 'chart-svg', 'aria-hidden': 'true' });
  rows.forEach((r, k) => {
    const y = k * rowH;
    const w = Math.max(2, (r.value / max) * barMax);
    svg.append(
      s('text', { x: 0, y: y + 13, class: 'chart-label' }, fit(r.label, width - 4)),
      s('rect', { x: 0, y: y + 19, width: w, height: 14, rx: 3, class: `chart-bar ${barClass}` }, s('title', {}, `${r.label}: ${valueText(r)}`)),
      s('text', { x: w + 6, y: y + 30, class: 'chart-value' }, valueText(r)),
    );
  });
  return svg;
}

/** A text alternative for a chart: screen readers get the numbers as a list. */
function srList(items) {
  return h('ul', { class: 'sr-only' }, items.map((t) => h('li', {}, t)));
}

export function spendByModel(data) {
  const rows = (Array.isArray(data.by_model) ? data.by_model : [])
    .filter((r) => Number(r.cost_usd) > 0)
    .slice(0, 8)
    .map((r) => ({ label: plainText(r.key), value: Number(r.cost_usd) }));
  if (!rows.length) return null;
  const total = Number(data.totals?.cost_usd) || rows.reduce((a, r) => a + r.value, 0);
  const pct = (v) => (total > 0 ? ` · ${((v / total) * 100).toFixed(0)}%` : '');
  const fig = responsive('chart-models', 'Spend by model', null, (w) => bars(rows, w, { valueText: (r) => `${usdShort(r.value)}${pct(r.value)}` }));
  fig.setAttribute('data-chart', 'by-model');
  fig.append(srList(rows.map((r) => `${r.label}: ${usd(r.value)}`)));
  return fig;
}

export function savingsByRecommendation(data) {
  const recs = Array.isArray(data.recommendations) ? data.recommendations : [];
  const rows = recs.map((r) => ({ label: plainText(r.title ?? r.kind ?? ''), value: Number(r.monthly_saving_usd) || 0 }));
  if (!rows.length) return null;
  const total = Number(data.total_monthly_saving_usd) || rows.reduce((a, r) => a + r.value, 0);
  const fig = responsive('chart-savings', 'Savings by recommendation', `up to ${usd(total)} per month`, (w) =>
    bars(rows, w, { barClass: 'chart-bar-savings', valueText: (r) => `${usdShort(r.value)}/mo` }),
  );
  fig.setAttribute('data-chart', 'savings');
  fig.append(srList(rows.map((r) => `${r.label}: ${usd(r.value)} per month`)));
  return fig;
}

/** Every day of the period, days without usage as zero (as the report counts them). */
function dailySeries(data) {
  const byDay = new Map((Array.isArray(data.by_day) ? data.by_day : []).map((r) => [String(r.key), Number(r.cost_usd) || 0]));
  const keys = [...byDay.keys()].sort();
  if (!keys.length) return [];
  const from = data.period?.from ? data.period.from.slice(0, 10) : keys[0];
  const last = data.period?.to ? new Date(Date.parse(data.period.to) - 1).toISOString().slice(0, 10) : keys[keys.length - 1];
  const start = from < keys[0] ? from : keys[0];
  const end = last > keys[keys.length - 1] ? last : keys[keys.length - 1];
  const out = [];
  for (let d = new Date(`${start}T00:00:00Z`); out.length < 400; d.setUTCDate(d.getUTCDate() + 1)) {
    const key = d.toISOString().slice(0, 10);
    out.push({ day: key, value: byDay.get(key) ?? 0 });
    if (key >= end) break;
  }
  return out;
}

/** A round step for about `n` gridlines up to `max`: 1, 2, 2.5 or 5 × 10^k. */
function niceStep(max, n) {
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
}

function median(values) {
  const v = [...values].sort((a, b) => a - b);
  if (!v.length) return 0;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function dailySpend(data) {
  const days = dailySeries(data);
  if (days.length < 2) return null;
  // The spike the anomaly agent found (with its median); otherwise the highest day, which the
  // report names, against the median of the days drawn.
  const spike = data.spike && data.spike.day ? data.spike : null;
  const med = spike && Number.isFinite(Number(spike.median_cost_usd)) ? Number(spike.median_cost_usd) : median(days.map((d) => d.value));
  const top = days.reduce((a, d) => (d.value > a.value ? d : a), days[0]);
  const markDay = spike ? spike.day : top.day;
  const markText = spike
    ? `${spike.is_spike ? 'Spike' : 'Day asked about'}: ${usd(spike.day_cost_usd)}${spike.ratio ? `, ${Number(spike.ratio).toFixed(1)}× median` : ''}`
    : `Highest day: ${usd(top.value)}${med > 0 ? `, ${(top.value / med).toFixed(1)}× median` : ''}`;
  const caption = `${days[0].day} – ${days[days.length - 1].day}, UTC${med > 0 ? ` · dashed line: median day ${usd(med)}` : ''}`;
  const fig = responsive('chart-daily', 'Daily spend', caption, (width) => {
    const height = 220;
    const left = 48;
    const top_ = 30;
    const bottom = 24;
    const plotW = width - left - 4;
    const plotH = height - top_ - bottom;
    const peak = Math.max(...days.map((d) => d.value), 0) || 1;
    const tick = niceStep(peak, 3);
    const max = Math.max(peak * 1.04, tick * Math.ceil(peak / tick));
    const y = (v) => top_ + plotH - (v / max) * plotH;
    const step = plotW / days.length;
    const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', 'aria-hidden': 'true' });
    for (let v = 0; v <= max + 1e-9; v += tick) {
      svg.append(s('line', { x1: left, x2: width, y1: y(v), y2: y(v), class: 'chart-grid' }), s('text', { x: left - 6, y: y(v) + 4, class: 'chart-axis', 'text-anchor': 'end' }, usdShort(v)));
    }
    const labelEvery = Math.max(1, Math.ceil(days.length / Math.max(2, Math.floor(plotW / 56))));
    let markX = null;
    days.forEach((d, k) => {
      const x = left + k * step;
      const marked = d.day === markDay;
      const bh = Math.max(d.value > 0 ? 1 : 0, top_ + plotH - y(d.value));
      svg.append(
        s(
          'rect',
          { x: x + step * 0.15, y: top_ + plotH - bh, width: Math.max(1, step * 0.7), height: bh, rx: Math.min(2, step * 0.2), class: marked ? 'chart-bar chart-bar-marked' : 'chart-bar chart-bar-day', 'data-day': d.day, 'data-marked': marked ? 'true' : null },
          s('title', {}, `${d.day}: ${usd(d.value)}`),
        ),
      );
      if (marked) markX = x + step / 2;
      if (k % labelEvery === 0) svg.append(s('text', { x: x + step / 2, y: height - 6, class: 'chart-axis', 'text-anchor': 'middle' }, d.day.slice(5)));
    });
    if (med > 0) svg.append(s('line', { x1: left, x2: width, y1: y(med), y2: y(med), class: 'chart-median' }));
    if (markX !== null) {
      const label = fit(markText, width - 8);
      const tw = label.length * 7.4;
      const lx = Math.min(Math.max(markX - tw / 2, 4), width - tw - 4);
      svg.append(s('line', { x1: markX, x2: markX, y1: 20, y2: top_ + 4, class: 'chart-marker' }), s('text', { x: lx, y: 14, class: 'chart-mark-label' }, label));
    }
    return svg;
  });
  fig.setAttribute('data-chart', 'daily');
  fig.append(srList([`${markText} on ${markDay}`, `Median day: ${usd(med)}`, ...days.map((d) => `${d.day}: ${usd(d.value)}`)]));
  return fig;
}

/** The headline numbers above the charts. */
export function kpis(data) {
  const items = [];
  if (data.totals) {
    items.push(['Total spend', usd(data.totals.cost_usd)], ['Calls', count(data.totals.calls)]);
  }
  if (data.total_monthly_saving_usd !== null && data.total_monthly_saving_usd !== undefined) {
    items.push(['Potential saving', `${usd(data.total_monthly_saving_usd)}/mo`]);
  }
  const top = Array.isArray(data.by_model) ? data.by_model[0] : null;
  if (top) items.push(['Top model', String(top.key)]);
  if (!items.length) return null;
  return h('dl', { class: 'kpis' }, items.map(([k, v]) => h('div', { class: 'kpi' }, h('dt', {}, k), h('dd', {}, v))));
}

/** Columns over time (days or weeks) with the highest one marked; `points` are
 * `{key, label, value, display}` in order. */
function columns(points, width) {
  const height = 200;
  const left = 48;
  const top_ = 26;
  const bottom = 24;
  const plotW = width - left - 4;
  const plotH = height - top_ - bottom;
  const peak = Math.max(...points.map((p) => p.value), 0) || 1;
  const tick = niceStep(peak, 3);
  const max = Math.max(peak * 1.04, tick * Math.ceil(peak / tick));
  const y = (v) => top_ + plotH - (v / max) * plotH;
  const step = plotW / points.length;
  const best = points.reduce((a, p) => (p.value > a.value ? p : a), points[0]);
  const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart-svg', 'aria-hidden': 'true' });
  const money = points.some((p) => String(p.display).startsWith('$'));
  for (let v = 0; v <= max + 1e-9; v += tick) {
    svg.append(s('line', { x1: left, x2: width, y1: y(v), y2: y(v), class: 'chart-grid' }), s('text', { x: left - 6, y: y(v) + 4, class: 'chart-axis', 'text-anchor': 'end' }, money ? usdShort(v) : count(Math.round(v))));
  }
  const labelEvery = Math.max(1, Math.ceil(points.length / Math.max(2, Math.floor(plotW / 56))));
  points.forEach((p, k) => {
    const x = left + k * step;
    const marked = p === best;
    const bh = Math.max(p.value > 0 ? 1 : 0, top_ + plotH - y(p.value));
    svg.append(s('rect', { x: x + step * 0.15, y: top_ + plotH - bh, width: Math.max(1, step * 0.7), height: bh, rx: Math.min(2, step * 0.2), class: marked ? 'chart-bar chart-bar-marked' : 'chart-bar chart-bar-day', 'data-key': p.key, 'data-marked': marked ? 'true' : null }, s('title', {}, `${p.label}: ${p.display}`)));
    if (k % labelEvery === 0) svg.append(s('text', { x: x + step / 2, y: height - 6, class: 'chart-axis', 'text-anchor': 'middle' }, fit(String(p.label), step * labelEvery)));
    if (marked) {
      const label = fit(`Highest: ${p.display}`, width - 8);
      const tw = label.length * 7.4;
      const lx = Math.min(Math.max(x + step / 2 - tw / 2, 4), width - tw - 4);
      svg.append(s('text', { x: lx, y: 14, class: 'chart-mark-label' }, label));
    }
  });
  return svg;
}

/** The one chart a focused answer's data names (`data.answer.chart`): a ranking, a series
 * over time, or a before/after; null for none. */
export function answerChart(chart) {
  if (!chart || typeof chart !== 'object') return null;
  // Labels come from the answer's text and may carry its markdown; a chart shows plain text.
  const title = plainText(chart.title ?? '');
  if (chart.kind === 'ranking' || chart.kind === 'before_after') {
    const list = Array.isArray(chart.rows) ? chart.rows : Array.isArray(chart.bars) ? chart.bars : [];
    const rows = list.map((r) => ({ label: plainText(r.label ?? ''), value: Math.max(0, Number(r.value) || 0), display: plainText(r.display ?? '') }));
    if (!rows.length) return null;
    const kind = chart.kind === 'ranking' ? 'ranking' : 'before-after';
    const fig = responsive(`chart-${kind}`, title, null, (w) => bars(rows, w, { barClass: kind === 'ranking' ? 'chart-bar-model' : 'chart-bar-compare', valueText: (r) => r.display }));
    fig.setAttribute('data-chart', kind);
    fig.append(srList(rows.map((r) => `${r.label}: ${r.display}`)));
    return fig;
  }
  if (chart.kind === 'series') {
    const points = (Array.isArray(chart.points) ? chart.points : []).map((p) => ({ key: String(p.key ?? ''), label: plainText(p.label ?? p.key ?? ''), value: Math.max(0, Number(p.value) || 0), display: String(p.display ?? '') }));
    if (points.length < 2) return null;
    const fig = responsive('chart-series', title, `${points[0].label} – ${points[points.length - 1].label}`, (w) => columns(points, w));
    fig.setAttribute('data-chart', 'series');
    fig.append(srList(points.map((p) => `${p.label}: ${p.display}`)));
    return fig;
  }
  return null;
}

/** KPIs and every chart the data supports, or null when it supports none. */
export function reportCharts(data) {
  if (!data || typeof data !== 'object') return null;
  const charts = [dailySpend(data), spendByModel(data), savingsByRecommendation(data)].filter(Boolean);
  const k = kpis(data);
  if (!charts.length && !k) return null;
  return h('section', { class: 'report-visuals', 'aria-label': 'Charts' }, k, h('div', { class: 'charts' }, charts));
}
