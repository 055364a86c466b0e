// /ui/pattern?id=I: one node. Its data (/standin/v1/pattern), its ancestry (the Phase 4 ancestry
// route; the ancestors' own parents from /standin/v1/patterns give the edges) and its descendants,
// fetched level by level through the Phase 4 descendants route, drawn as one graph.
import {
  API, baseName, el, fileHref, getJSON, initChrome, patternHref, showError, showStatus, timeEl,
} from './common.js';
import { drawGraph } from './graph.js';
import { codeBlock } from './highlight.js';

const MAX_ANCESTORS = 200;
const MAX_DESCENDANTS = 150;
const MAX_LEVELS = 8;
const BATCH = 200; // ids per /standin/v1/patterns call

const params = new URLSearchParams(location.search);
const id = params.get('id') || '';
const version = params.get('version');
const status = document.getElementById('status');
const note = document.getElementById('graph-note');

async function heads(ids) {
  const out = {};
  for (let i = 0; i < ids.length; i += BATCH) {
    const q = new URLSearchParams();
    for (const one of ids.slice(i, i + BATCH)) q.append('id', one);
    Object.assign(out, (await getJSON('/standin/v1/patterns?' + q.toString())).data.patterns);
  }
  return out;
}

function graphNode(n, role) {
  return {
    id: n.pattern_id,
    version: n.pattern_version,
    name: n.pattern_name || baseName(n.file_path) || n.pattern_id,
    generation: typeof n.generation === 'number' ? n.generation : 1,
    parents: Array.isArray(n.parent_pattern_ids) ? n.parent_pattern_ids : [],
    edgeType: n.edge_type,
    createdAt: n.created_at,
    role,
  };
}

const lineageUrl = (pid, kind) => `${API}/lineage/${encodeURIComponent(pid)}?query_type=${kind}`;

async function collect(node) {
  const nodes = new Map([[node.pattern_id, graphNode(node, 'self')]]);
  const notes = [];
  const ancestry = (await getJSON(lineageUrl(node.pattern_id, 'ancestry'))).data;
  const ancestorIds = [...new Set(ancestry.ancestors.slice(1).map((a) => a.ancestor_pattern_id))];
  if (ancestorIds.length > MAX_ANCESTORS) notes.push(`the nearest ${MAX_ANCESTORS} of ${ancestorIds.length} ancestors`);
  for (const head of Object.values(await heads(ancestorIds.slice(0, MAX_ANCESTORS)))) {
    nodes.set(head.pattern_id, graphNode(head, 'ancestor'));
  }
  let frontier = [node.pattern_id];
  let found = 0;
  let level = 0;
  while (frontier.length && level < MAX_LEVELS && found < MAX_DESCENDANTS) {
    const answers = await Promise.all(frontier.map((pid) => getJSON(lineageUrl(pid, 'descendants'))));
    let fresh = [];
    for (const answer of answers) {
      for (const d of answer.data.descendants) {
        const known = nodes.get(d.descendant_pattern_id);
        if ((!known || known.role === 'other') && !fresh.includes(d.descendant_pattern_id)) fresh.push(d.descendant_pattern_id);
      }
    }
    if (found + fresh.length > MAX_DESCENDANTS) {
      fresh = fresh.slice(0, MAX_DESCENDANTS - found);
      notes.push(`the first ${MAX_DESCENDANTS} descendants`);
    }
    const got = await heads(fresh);
    for (const head of Object.values(got)) nodes.set(head.pattern_id, graphNode(head, 'descendant'));
    found += fresh.length;
    const others = [...new Set(Object.values(got).flatMap((h) => h.parent_pattern_ids || []))].filter((p) => !nodes.has(p));
    for (const head of Object.values(await heads(others))) nodes.set(head.pattern_id, graphNode(head, 'other'));
    frontier = fresh;
    level += 1;
  }
  if (frontier.length && level >= MAX_LEVELS) notes.push(`descendants down to ${MAX_LEVELS} levels`);
  return { nodes, notes, ancestors: ancestorIds.length };
}

function field(name, ...value) {
  return [el('dt', { text: name }), el('dd', {}, ...value)];
}

function fields(node) {
  const data = node.pattern_data && typeof node.pattern_data === 'object' ? node.pattern_data : {};
  const occurred = typeof data.occurred_at === 'number' && data.occurred_at > 0 ? new Date(data.occurred_at * 1000).toISOString() : null;
  const parents = (node.parent_pattern_ids || []).flatMap((p, i) => [i ? ', ' : '', el('a', { href: patternHref(p), text: p })]);
  const rows = [
    field('Pattern id', el('code', { text: node.pattern_id })),
    field('Version', String(node.pattern_version)),
    field('Name', node.pattern_name || '—'),
    field('Type', node.pattern_type || '—'),
    field('Event', node.event_type || '—'),
    field('Generation', String(node.generation)),
    field('Tracked', timeEl(node.created_at)),
    field('Edited', occurred ? timeEl(occurred) : '—'),
    field('File', node.file_path ? el('a', { href: fileHref(node.file_path), text: node.file_path }) : '—'),
    field('Language', node.language || '—'),
    field('Tool', node.tool_name || '—'),
    field('Session', data.session_id ? el('code', { text: String(data.session_id) }) : '—'),
    field('Triggered by', node.triggered_by || '—'),
    field('Parents', ...(parents.length ? parents : ['none'])),
    field('Edge', [node.edge_type, node.transformation_type].filter(Boolean).join(' · ') || '—'),
    field('Reason', node.reason || '—'),
    field('Lineage id', el('code', { text: node.lineage_id || '—' })),
    field('Node id', el('code', { text: node.pattern_node_id || '—' })),
  ];
  const shown = new Set(['code', 'occurred_at', 'session_id', 'file_path', 'language']);
  for (const [key, value] of Object.entries(data)) {
    if (shown.has(key)) continue;
    rows.push(field(`data.${key}`, el('code', { text: typeof value === 'string' ? value : JSON.stringify(value) })));
  }
  return rows.flat();
}

async function main() {
  initChrome();
  document.getElementById('crumb').textContent = id || '(no pattern)';
  if (!id) {
    showError(status, 'No pattern given: open one from a file’s history.');
    return;
  }
  let node;
  try {
    const q = new URLSearchParams({ id });
    if (version) q.set('version', version);
    node = (await getJSON('/standin/v1/pattern?' + q.toString())).data;
  } catch (error) {
    showError(status, error);
    return;
  }
  const title = `${node.pattern_name || baseName(node.file_path) || node.pattern_id} · version ${node.pattern_version}`;
  document.getElementById('title').textContent = title;
  document.title = `${title} · pattern-tracker`;
  if (node.file_path) {
    const crumb = document.getElementById('crumb-file');
    crumb.setAttribute('href', fileHref(node.file_path));
    crumb.textContent = baseName(node.file_path);
  }
  document.getElementById('fields').replaceChildren(...fields(node));
  const code = node.pattern_data && typeof node.pattern_data.code === 'string' ? node.pattern_data.code : '';
  codeBlock(code, node.language).then((block) => document.getElementById('code-box').replaceChildren(block));
  showStatus(status, 'Loading the lineage…');
  try {
    const { nodes, notes, ancestors } = await collect(node);
    document.getElementById('graph').replaceChildren(drawGraph(nodes));
    const descendants = [...nodes.values()].filter((n) => n.role === 'descendant').length;
    showStatus(status, '');
    note.textContent = `${ancestors} ancestor${ancestors === 1 ? '' : 's'}, ${descendants} descendant${descendants === 1 ? '' : 's'} shown` +
      (notes.length ? ` (${notes.join('; ')})` : '') + '. Each node links to its page.';
  } catch (error) {
    showError(status, error);
  }
}

main();
