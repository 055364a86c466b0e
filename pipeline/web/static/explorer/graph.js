// A lineage graph as SVG: nodes layered by generation (left to right), edges from parent to child,
// so a fork is one node with several edges out and a merge one node with several edges in.
// Every node is a link to its own page. Text goes in with textContent (via svg()), never markup.
import { patternHref, svg } from './common.js';

const W = 200;
const H = 48;
const GAP_X = 72;
const GAP_Y = 18;
const PAD = 16;
const TOP = 30;

function byTime(a, b) {
  return String(a.createdAt || '').localeCompare(String(b.createdAt || '')) || String(a.id).localeCompare(String(b.id));
}

function short(text, max) {
  const s = String(text ?? '');
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

/** Column and row of every node: a column per generation; in each column, nodes ordered by the
 *  mean row of their parents (fewer crossings), then by time. */
function layout(nodes) {
  const gens = [...new Set([...nodes.values()].map((n) => n.generation))].sort((a, b) => a - b);
  const layers = gens.map((g) => [...nodes.values()].filter((n) => n.generation === g));
  const row = new Map();
  for (const layer of layers) {
    const bary = new Map(layer.map((n) => {
      const rows = n.parents.filter((p) => row.has(p)).map((p) => row.get(p));
      return [n.id, rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Number.MAX_VALUE];
    }));
    layer.sort((a, b) => (bary.get(a.id) - bary.get(b.id)) || byTime(a, b));
    layer.forEach((n, k) => row.set(n.id, k));
  }
  const tallest = Math.max(...layers.map((l) => l.length));
  const pos = new Map();
  layers.forEach((layer, c) => {
    const offset = ((tallest - layer.length) * (H + GAP_Y)) / 2;
    layer.forEach((n, k) => pos.set(n.id, { x: PAD + c * (W + GAP_X), y: TOP + offset + k * (H + GAP_Y) }));
  });
  return { gens, pos, width: PAD * 2 + gens.length * W + (gens.length - 1) * GAP_X, height: TOP + tallest * (H + GAP_Y) + PAD };
}

/** ``nodes``: Map id -> {id, version, name, generation, parents, role, edgeType, createdAt}. */
export function drawGraph(nodes) {
  const { gens, pos, width, height } = layout(nodes);
  const root = svg('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, role: 'group', class: 'lineage',
    'aria-label': `Lineage graph, ${nodes.size} node${nodes.size === 1 ? '' : 's'}`,
  });
  root.append(svg('defs', {},
    svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto' },
      svg('path', { d: 'M0 0 L10 5 L0 10 z', class: 'arrowhead' }))));
  gens.forEach((g, c) => {
    root.append(svg('text', { x: PAD + c * (W + GAP_X) + W / 2, y: 16, class: 'gen-label', 'text-anchor': 'middle', text: `generation ${g}` }));
  });
  const edges = svg('g', { class: 'edges' });
  for (const n of nodes.values()) {
    const to = pos.get(n.id);
    for (const p of n.parents) {
      const from = pos.get(p);
      if (!from) continue;
      const x1 = from.x + W;
      const y1 = from.y + H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + H / 2;
      const bend = Math.max(24, (x2 - x1) / 2);
      edges.append(svg('path', {
        d: `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}`,
        class: ['edge', n.edgeType === 'merged_from' ? 'merge' : null],
        'marker-end': 'url(#arrow)', 'data-from': p, 'data-to': n.id,
      }));
    }
  }
  root.append(edges);
  const boxes = svg('g', { class: 'nodes' });
  for (const n of nodes.values()) {
    const { x, y } = pos.get(n.id);
    const name = `${n.name} v${n.version}`;
    boxes.append(svg('a', { href: patternHref(n.id), class: ['node', n.role], 'data-id': n.id },
      svg('title', { text: `${name} (generation ${n.generation})\n${n.id}` }),
      svg('rect', { x, y, width: W, height: H, rx: '6' }),
      svg('text', { x: x + 9, y: y + 19, class: 'name', text: short(name, 27) }),
      svg('text', { x: x + 9, y: y + 37, class: 'sub', text: short(n.id, 30) })));
  }
  root.append(boxes);
  return root;
}
