// /ui/: the tracked files, a page at a time (the server pages and searches: /standin/v1/files).
//
// The URL holds the filter and the page's cursor (?search=&after=), so a page can be bookmarked;
// the cursors of the pages before it live in history.state, so Previous (and the browser's Back)
// return to them.
import { el, fileHref, getJSON, initChrome, showError, showStatus, timeEl } from './common.js';

const PAGE = 50;
const form = document.getElementById('filter-form');
const input = document.getElementById('filter');
const tbody = document.querySelector('#files tbody');
const status = document.getElementById('status');
const prev = document.getElementById('prev');
const next = document.getElementById('next');
const label = document.getElementById('page-label');
let shown = null; // the page on screen: {search, after, next}
let loads = 0;

function where() {
  const q = new URLSearchParams(location.search);
  return { search: q.get('search') || '', after: q.get('after') || '' };
}

function stack() {
  const st = history.state;
  return st && Array.isArray(st.stack) ? st.stack : [];
}

function urlFor(search, after) {
  const q = new URLSearchParams();
  if (search) q.set('search', search);
  if (after) q.set('after', after);
  const qs = q.toString();
  return '/ui/' + (qs ? '?' + qs : '');
}

function go(search, after, cursors, replace = false) {
  history[replace ? 'replaceState' : 'pushState']({ stack: cursors }, '', urlFor(search, after));
  load();
}

function row(f) {
  return el('tr', {},
    el('td', { class: 'path' }, el('a', { href: fileHref(f.file_path), text: f.file_path })),
    el('td', { text: f.language || '—' }),
    el('td', { class: 'num', text: f.versions }),
    el('td', {}, timeEl(f.last_edit)),
    el('td', { class: 'mono', text: f.last_session || '—' }),
    el('td', { text: f.last_tool || '—' }));
}

async function load() {
  const { search, after } = where();
  if (document.activeElement !== input) input.value = search;
  const mine = ++loads;
  const q = new URLSearchParams({ limit: String(PAGE) });
  if (search) q.set('search', search);
  if (after) q.set('after', after);
  showStatus(status, 'Loading…');
  try {
    const body = await getJSON('/standin/v1/files?' + q.toString());
    if (mine !== loads) return; // a newer request is on its way
    render(body.data, search, after);
  } catch (error) {
    if (mine === loads) showError(status, error);
  }
}

function render(page, search, after) {
  tbody.replaceChildren(...page.files.map(row));
  const number = stack().length + 1;
  const matching = search ? ` matching “${search}”` : '';
  if (page.files.length) {
    showStatus(status, `${page.files.length} file${page.files.length === 1 ? '' : 's'}${matching}${page.next ? ', more on the next page' : ''}.`);
  } else {
    showStatus(status, search ? `No tracked file matches “${search}”.` : after ? 'No more files.' : 'No tracked files yet: edits appear here once they are delivered to this server.');
  }
  label.textContent = `Page ${number}`;
  prev.disabled = !after;
  next.disabled = !page.next;
  shown = { search, after, next: page.next };
}

next.addEventListener('click', () => {
  if (shown && shown.next) go(shown.search, shown.next, [...stack(), shown.after]);
});

prev.addEventListener('click', () => {
  if (!shown) return;
  const cursors = stack();
  go(shown.search, cursors.length ? cursors[cursors.length - 1] : '', cursors.slice(0, -1));
});

form.addEventListener('submit', (event) => {
  event.preventDefault();
  go(input.value.trim(), '', []);
});

let typing = null;
input.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => go(input.value.trim(), '', [], true), 250);
});

window.addEventListener('popstate', load);
initChrome();
load();
