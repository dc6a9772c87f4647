// Number and time formatting for display.

const usd2 = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 2 });
const usd0 = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', maximumFractionDigits: 0 });
const int = new Intl.NumberFormat('en-US');

/** `$1,234.56`; large amounts without cents. */
export function usd(v) {
  const n = Number(v) || 0;
  return Math.abs(n) >= 10000 ? usd0.format(n) : usd2.format(n);
}

/** Compact dollars for axis labels: `$1.2k`. */
export function usdShort(v) {
  const n = Number(v) || 0;
  if (Math.abs(n) >= 1e6) return `$${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e3) return `$${(n / 1e3).toFixed(n >= 1e4 ? 0 : 1)}k`;
  if (Math.abs(n) >= 10 || Number.isInteger(n)) return `$${n.toFixed(0)}`;
  return `$${n.toFixed(2)}`;
}

export function count(v) {
  return int.format(Number(v) || 0);
}

export function duration(ms) {
  const n = Number(ms) || 0;
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
  return `${Math.floor(n / 60000)} min ${Math.round((n % 60000) / 1000)} s`;
}

export function time(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** A compact one-line rendering of tool arguments. */
export function args(value) {
  if (value === undefined || value === null) return '';
  try {
    const text = JSON.stringify(value);
    return text.length > 300 ? `${text.slice(0, 297)}…` : text;
  } catch {
    return String(value);
  }
}
