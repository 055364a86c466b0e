// /ui/file?path=P: one file's history. Its versions (/standin/v1/file) as a timeline, the code of
// any version (/standin/v1/pattern, highlighted), and the diff between any two (the previous one
// by default). The chosen versions are kept in the URL (?code=&from=&to=, pattern ids).
import {
  baseName, el, fmtBytes, getJSON, initChrome, patternHref, showError, showStatus, timeEl,
} from './common.js';
import { diffRows } from './diff.js';
import { codeBlock } from './highlight.js';

const params = new URLSearchParams(location.search);
const path = params.get('path') || '';
const status = document.getElementById('status');
const timeline = document.getElementById('timeline');
const codeSelect = document.getElementById('code-version');
const codeBox = document.getElementById('code-box');
const codeNode = document.getElementById('code-node');
const fromSelect = document.getElementById('diff-from');
const toSelect = document.getElementById('diff-to');
const diffBody = document.querySelector('#diff tbody');
const diffStats = document.getElementById('diff-stats');
const diffNote = document.getElementById('diff-note');
let versions = [];
const codes = new Map();

function codeOf(v) {
  const key = `${v.pattern_id}\u0000${v.pattern_version}`;
  if (!codes.has(key)) {
    const q = new URLSearchParams({ id: v.pattern_id, version: v.pattern_version });
    codes.set(key, getJSON('/standin/v1/pattern?' + q.toString()).then((body) => {
      const code = body.data.pattern_data ? body.data.pattern_data.code : '';
      return { code: typeof code === 'string' ? code : '', language: body.data.language };
    }));
  }
  return codes.get(key);
}

function label(v) {
  return `v${v.pattern_version} · generation ${v.generation}`;
}

function remember() {
  const q = new URLSearchParams({ path });
  const pick = (select) => versions[Number(select.value)];
  for (const [name, select] of [['code', codeSelect], ['from', fromSelect], ['to', toSelect]]) {
    const v = pick(select);
    if (v) q.set(name, v.pattern_id);
  }
  history.replaceState(null, '', '/ui/file?' + q.toString());
}

function indexOf(id, fallback) {
  const i = versions.findIndex((v) => v.pattern_id === id);
  return i >= 0 ? i : fallback;
}

function card(v, i) {
  const meta = [];
  meta.push(el('span', {}, 'edited ', timeEl(v.edit_time)));
  if (v.tool_name) meta.push(el('span', { class: 'tool', text: `tool ${v.tool_name}` }));
  if (v.session_id) meta.push(el('span', {}, 'session ', el('code', { text: v.session_id })));
  meta.push(el('span', { text: `${fmtBytes(v.size_bytes)}, ${v.lines} line${v.lines === 1 ? '' : 's'}` }));
  if (v.file_path && v.file_path !== path) meta.push(el('span', {}, 'cell ', el('code', { text: v.file_path })));
  const showCode = el('button', { type: 'button', text: 'Show code' });
  showCode.addEventListener('click', () => {
    codeSelect.value = String(i);
    showCodeOf();
    codeSelect.focus();
  });
  const actions = [showCode];
  if (i > 0) {
    const diff = el('button', { type: 'button', text: 'Changes from the previous version' });
    diff.addEventListener('click', () => {
      fromSelect.value = String(i - 1);
      toSelect.value = String(i);
      showDiff();
      fromSelect.focus();
    });
    actions.push(diff);
  }
  actions.push(el('a', { href: patternHref(v.pattern_id), text: 'node' }));
  return el('li', { class: ['version', v.event_type] },
    el('p', { class: 'head' },
      el('strong', {}, 'Version ', el('span', { class: 'v', text: v.pattern_version })),
      ' ',
      el('span', { class: 'gen' }, 'generation ', el('span', { class: 'g', text: v.generation })),
      ' ',
      el('span', { class: 'event', text: (v.event_type || '').replace(/^pattern_/, '') })),
    el('p', { class: 'meta' }, ...meta.flatMap((m, k) => (k ? [' · ', m] : [m]))),
    el('p', { class: 'actions' }, ...actions.flatMap((a, k) => (k ? [' ', a] : [a]))));
}

function fillSelect(select, chosen) {
  select.replaceChildren(...versions.map((v, i) => el('option', { value: String(i), text: label(v) })));
  select.value = String(chosen);
}

async function showCodeOf() {
  const v = versions[Number(codeSelect.value)];
  if (!v) return;
  codeNode.setAttribute('href', patternHref(v.pattern_id));
  remember();
  try {
    const { code, language } = await codeOf(v);
    if (versions[Number(codeSelect.value)] !== v) return;
    codeBox.replaceChildren(await codeBlock(code, language || v.language));
  } catch (error) {
    codeBox.replaceChildren(el('p', { class: 'error', text: error.message }));
  }
}

function diffRow(r) {
  if (r.kind === 'skip') {
    return el('tr', { class: 'skip' }, el('td', { colspan: '4', text: `⋯ ${r.count} unchanged line${r.count === 1 ? '' : 's'}` }));
  }
  const sign = r.kind === 'add' ? '+' : r.kind === 'del' ? '-' : '';
  const said = r.kind === 'add' ? 'added' : r.kind === 'del' ? 'removed' : 'unchanged';
  return el('tr', { class: r.kind },
    el('td', { class: 'num', text: r.oldNo ?? '' }),
    el('td', { class: 'num', text: r.newNo ?? '' }),
    el('td', { class: 'sign' }, sign, el('span', { class: 'visually-hidden', text: said })),
    el('td', { class: 'line' }, el('code', { text: r.text })));
}

async function showDiff() {
  const a = versions[Number(fromSelect.value)];
  const b = versions[Number(toSelect.value)];
  remember();
  if (!a || !b) return;
  diffNote.textContent = 'Loading…';
  try {
    const [old, now] = await Promise.all([codeOf(a), codeOf(b)]);
    if (versions[Number(fromSelect.value)] !== a || versions[Number(toSelect.value)] !== b) return;
    const { rows, added, removed } = diffRows(old.code, now.code);
    diffBody.replaceChildren(...rows.map(diffRow));
    diffStats.textContent = `${added} line${added === 1 ? '' : 's'} added, ${removed} removed`;
    diffNote.textContent = a === b ? 'The same version on both sides.' : rows.length ? '' : 'No line differs between these versions.';
  } catch (error) {
    diffBody.replaceChildren();
    diffNote.textContent = '';
    showError(diffStats, error);
  }
}

async function main() {
  initChrome();
  document.getElementById('crumb').textContent = path || '(no file)';
  document.getElementById('title').textContent = path || 'File history';
  document.title = `${baseName(path) || 'File'} · history · pattern-tracker`;
  if (!path) {
    showError(status, 'No file given: open a file from the list.');
    return;
  }
  let body;
  try {
    body = await getJSON('/standin/v1/file?' + new URLSearchParams({ path }).toString());
  } catch (error) {
    showError(status, error);
    return;
  }
  versions = body.data.versions;
  if (!versions.length) {
    showStatus(status, 'No version of this file is tracked here.');
    return;
  }
  const last = versions[versions.length - 1];
  document.getElementById('summary').textContent =
    `${versions.length} version${versions.length === 1 ? '' : 's'}${body.data.truncated ? ' (the oldest ones: there are more)' : ''}` +
    ` · ${last.language || 'language unknown'} · newest generation ${last.generation}`;
  showStatus(status, '');
  timeline.replaceChildren(...versions.map(card));
  const n = versions.length;
  fillSelect(codeSelect, indexOf(params.get('code'), n - 1));
  const to = indexOf(params.get('to'), n - 1);
  fillSelect(toSelect, to);
  fillSelect(fromSelect, indexOf(params.get('from'), Math.max(0, to - 1)));
  codeSelect.addEventListener('change', showCodeOf);
  fromSelect.addEventListener('change', showDiff);
  toSelect.addEventListener('change', showDiff);
  await Promise.all([showDiff(), showCodeOf()]);
}

main();
