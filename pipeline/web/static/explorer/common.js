// What every explorer page shares: building the DOM from untrusted data, fetching JSON, formatting.
//
// Code, file names, ids and every other value from the store are untrusted. They only ever reach
// the page as text (textContent, Text nodes, attribute values set one by one): nothing here parses
// HTML. Links are built with encodeURIComponent.

export const API = '/api/pattern-traceability';

/** An HTML element: attributes set one by one (``text`` sets textContent), children as nodes or text. */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, the same way. */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name === 'class') node.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const fileHref = (path) => '/ui/file?path=' + encodeURIComponent(path);
export const patternHref = (id) => '/ui/pattern?id=' + encodeURIComponent(id);

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function detailOf(body) {
  if (!body) return '';
  if (typeof body.detail === 'string') return body.detail;
  if (Array.isArray(body.detail) && body.detail[0] && body.detail[0].msg) return body.detail[0].msg;
  if (typeof body.error === 'string') return body.error;
  return '';
}

/** GET a JSON document of this server; a 401 sends the browser to the login (and back after). */
export async function getJSON(url) {
  const resp = await fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  if (resp.status === 401) {
    location.assign('/ui/login?next=' + encodeURIComponent(location.pathname + location.search));
    throw new HttpError(401, 'Not logged in');
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const hint = resp.status === 503 ? ' (the lineage store is unavailable; try again shortly)' : '';
    throw new HttpError(resp.status, (detailOf(body) || resp.statusText || 'request failed') + hint);
  }
  return body;
}

/** Show ``error`` (or a message) in a status line, as text. */
export function showError(target, error) {
  target.classList.add('error');
  target.textContent = error instanceof Error ? error.message : String(error);
}

export function showStatus(target, message) {
  target.classList.remove('error');
  target.textContent = message;
}

const pad = (n) => String(n).padStart(2, '0');

/** An ISO time as local "YYYY-MM-DD HH:MM:SS" (the raw value when unparsable). */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A <time> element showing ``iso`` in local time, the exact value in its title. */
export function timeEl(iso) {
  return el('time', { datetime: iso || null, title: iso || null, text: fmtTime(iso) });
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** The last part of a path (a file's name). */
export function baseName(path) {
  const s = String(path || '');
  const cut = s.lastIndexOf('/');
  return cut >= 0 && cut < s.length - 1 ? s.slice(cut + 1) : s;
}

/** The header's log-out button shows when the server asks for a token. */
export async function initChrome() {
  const form = document.querySelector('form.logout');
  if (!form) return;
  try {
    const session = await getJSON('/ui/session');
    form.hidden = !session.token_required;
  } catch {
    form.hidden = true;
  }
}
