// A small markdown renderer for the answers: headings, paragraphs, bullet and numbered lists
// (nested by indentation), tables with alignment, fenced code, block quotes, rules, and inline
// bold, italic, code and http(s) links, and CommonMark backslash escapes (`\*` is a star, not
// emphasis: the server escapes names from usage data this way). It builds DOM nodes and puts
// every piece of text in through text nodes, so no input can inject markup; anything it does
// not understand stays plain text.

import { h } from './dom.js';

/** Renders markdown into a DocumentFragment. */
export function renderMarkdown(source) {
  const lines = String(source ?? '').replace(/\r\n?/g, '\n').split('\n');
  const frag = document.createDocumentFragment();
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const fence = line.match(/^\s*```(.*)$/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) body.push(lines[i++]);
      i += 1;
      const code = h('code', {}, body.join('\n'));
      if (fence[1].trim()) code.setAttribute('data-lang', fence[1].trim());
      frag.append(h('pre', {}, code));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*?)\s*#*\s*$/);
    if (heading) {
      // Answers start at `#`; inside a chat message that is a section, not the page title.
      const level = Math.min(6, heading[1].length + 2);
      frag.append(h(`h${level}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s{0,3}([-*_])(\s*\1){2,}\s*$/.test(line)) {
      frag.append(h('hr'));
      i += 1;
      continue;
    }
    if (isTableStart(lines, i)) {
      i = table(lines, i, frag);
      continue;
    }
    if (listMarker(line)) {
      i = list(lines, i, frag, indentOf(line));
      continue;
    }
    if (/^\s*>/.test(line)) {
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ''));
      frag.append(h('blockquote', {}, renderMarkdown(body.join('\n'))));
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !startsBlock(lines, i)) para.push(lines[i++].trim());
    if (!para.length) {
      // A line that looks like a block start but did not parse as one: plain text.
      para.push(lines[i++].trim());
    }
    frag.append(h('p', {}, inline(para.join(' '))));
  }
  return frag;
}

function startsBlock(lines, i) {
  const line = lines[i];
  return /^\s*```/.test(line) || /^#{1,6}\s/.test(line) || Boolean(listMarker(line)) || /^\s*>/.test(line) || isTableStart(lines, i);
}

function indentOf(line) {
  return line.match(/^\s*/)[0].length;
}

function listMarker(line) {
  const m = line.match(/^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/);
  if (!m) return null;
  return { indent: m[1].length, ordered: /\d/.test(m[2]), start: parseInt(m[2], 10), text: m[3] };
}

/** A list starting at line i with the given indentation; returns the next line index. */
function list(lines, i, parent, indent) {
  const first = listMarker(lines[i]);
  const el = h(first.ordered ? 'ol' : 'ul');
  if (first.ordered && first.start !== 1) el.setAttribute('start', String(first.start));
  parent.append(el);
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      // A blank line ends the list unless the list goes on after it.
      const next = lines[i + 1];
      const m = next !== undefined ? listMarker(next) : null;
      if (m && m.indent >= indent) {
        i += 1;
        continue;
      }
      break;
    }
    const m = listMarker(line);
    const ind = indentOf(line);
    if (m && m.indent === indent && m.ordered === first.ordered) {
      item = h('li', {}, inline(m.text));
      el.append(item);
      i += 1;
    } else if (m && m.indent > indent && item) {
      i = list(lines, i, item, m.indent);
    } else if (!m && ind > indent && item) {
      item.append(' ', inline(line.trim()));
      i += 1;
    } else {
      break;
    }
  }
  return i;
}

function splitRow(line) {
  let t = line.trim();
  if (t.startsWith('|')) t = t.slice(1);
  if (t.endsWith('|') && !t.endsWith('\\|')) t = t.slice(0, -1);
  const cells = [];
  let cur = '';
  for (let k = 0; k < t.length; k += 1) {
    if (t[k] === '\\' && t[k + 1] === '|') {
      cur += '|';
      k += 1;
    } else if (t[k] === '|') {
      cells.push(cur.trim());
      cur = '';
    } else {
      cur += t[k];
    }
  }
  cells.push(cur.trim());
  return cells;
}

function isTableStart(lines, i) {
  const head = lines[i];
  const sep = lines[i + 1];
  if (!head || !sep || !head.includes('|')) return false;
  const cells = splitRow(sep);
  return cells.length > 0 && cells.every((c) => /^:?-{1,}:?$/.test(c));
}

function table(lines, i, parent) {
  const header = splitRow(lines[i]);
  const align = splitRow(lines[i + 1]).map((c) => (c.endsWith(':') ? (c.startsWith(':') ? 'center' : 'right') : 'left'));
  const cell = (tag, text, k) => h(tag, { class: `align-${align[k] || 'left'}`, scope: tag === 'th' ? 'col' : null }, inline(text));
  const thead = h('thead', {}, h('tr', {}, header.map((c, k) => cell('th', c, k))));
  const tbody = h('tbody');
  i += 2;
  while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
    const row = splitRow(lines[i]);
    tbody.append(h('tr', {}, header.map((_, k) => cell('td', row[k] ?? '', k))));
    i += 1;
  }
  // Wide tables scroll inside their own box on small screens instead of widening the page.
  parent.append(h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': 'Table' }, h('table', {}, thead, tbody)));
  return i;
}

/** Inline markup → array of nodes. */
export function inline(text) {
  const out = [];
  let rest = String(text);
  const patterns = [
    // An escaped punctuation character is itself, whatever it would have started.
    { re: /\\([!-/:-@[-`{-~])/, make: (m) => document.createTextNode(m[1]) },
    { re: /`([^`]+)`/, make: (m) => h('code', {}, m[1]) },
    { re: /\*\*(.+?)\*\*/, make: (m) => h('strong', {}, inline(m[1])) },
    { re: /__(.+?)__/, make: (m) => h('strong', {}, inline(m[1])) },
    { re: /(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?!\w)/, make: (m) => h('em', {}, inline(m[1])) },
    { re: /(?<![\w])_(?!\s)(.+?)(?<!\s)_(?![\w])/, make: (m) => h('em', {}, inline(m[1])) },
    {
      re: /\[([^\]]+)\]\(([^)\s]+)\)/,
      make: (m) => (/^https?:\/\//i.test(m[2]) ? h('a', { href: m[2], rel: 'noopener noreferrer nofollow', target: '_blank' }, inline(m[1])) : document.createTextNode(m[0])),
    },
  ];
  while (rest) {
    let best = null;
    for (const p of patterns) {
      const m = p.re.exec(rest);
      if (m && (!best || m.index < best.m.index)) best = { m, p };
    }
    if (!best) {
      out.push(document.createTextNode(rest));
      break;
    }
    if (best.m.index > 0) out.push(document.createTextNode(rest.slice(0, best.m.index)));
    out.push(best.p.make(best.m));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
  return out;
}

/** The text a reader sees of inline markup (`code`, **bold**, links…): for places that
 * cannot hold markup, such as chart labels and titles. */
export function plainText(text) {
  return inline(text)
    .map((n) => n.textContent)
    .join('');
}
