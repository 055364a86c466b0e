// The changes between two versions as rows of a line diff (the vendored jsdiff, a global).
//
// Unchanged stretches longer than twice the context are folded into one "unchanged lines" row.
// Rows hold text only; the page renders them with textContent.

function linesOf(value) {
  const lines = value.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** {rows, added, removed}: rows are {kind: 'ctx'|'add'|'del'|'skip', oldNo, newNo, text, count}. */
export function diffRows(oldText, newText, context = 3) {
  const parts = window.Diff.diffLines(oldText, newText);
  const all = [];
  let oldNo = 0;
  let newNo = 0;
  let added = 0;
  let removed = 0;
  for (const part of parts) {
    for (const text of linesOf(part.value)) {
      if (part.added) {
        all.push({ kind: 'add', oldNo: null, newNo: ++newNo, text });
        added += 1;
      } else if (part.removed) {
        all.push({ kind: 'del', oldNo: ++oldNo, newNo: null, text });
        removed += 1;
      } else {
        all.push({ kind: 'ctx', oldNo: ++oldNo, newNo: ++newNo, text });
      }
    }
  }
  const keep = all.map((r) => r.kind !== 'ctx');
  all.forEach((r, i) => {
    if (r.kind === 'ctx') return;
    for (let j = Math.max(0, i - context); j <= Math.min(all.length - 1, i + context); j += 1) keep[j] = true;
  });
  const rows = [];
  let folded = 0;
  all.forEach((r, i) => {
    if (keep[i]) {
      if (folded) rows.push({ kind: 'skip', count: folded });
      folded = 0;
      rows.push(r);
    } else {
      folded += 1;
    }
  });
  if (folded && rows.length) rows.push({ kind: 'skip', count: folded });
  return { rows: added || removed ? rows : [], added, removed };
}
