// Syntax highlighting with the vendored highlight.js (a global, loaded before the modules).
//
// The code is put into a <code> element as text; highlightElement reads that text and writes
// back escaped markup (highlight.js escapes every token), so untrusted code never becomes HTML.
// Languages outside highlight.min.js's common set are loaded on demand from vendor/, by names
// from this file only: nothing from the store ever becomes a URL or a class name unchecked.
import { el } from './common.js';

const ALIASES = {
  'objective-c': 'objectivec', shell: 'bash', html: 'xml', vue: 'xml', svelte: 'xml', jupyter: 'json',
  toml: 'ini', hcl: 'ini', terraform: 'ini',
};
const EXTRA = new Set(['clojure', 'cmake', 'dart', 'dockerfile', 'elixir', 'erlang', 'groovy', 'haskell', 'julia',
  'nim', 'ocaml', 'powershell', 'protobuf', 'scala']);
const loading = new Map();
const MAX_HIGHLIGHT = 400_000; // characters: past this the code is shown plain (highlighting would stall the page)

function loadExtra(name) {
  if (!loading.has(name)) {
    loading.set(name, new Promise((resolve) => {
      const script = el('script', { src: `/ui/static/vendor/highlightjs/languages/${name}.min.js` });
      script.addEventListener('load', () => resolve(true));
      script.addEventListener('error', () => resolve(false));
      document.head.append(script);
    }));
  }
  return loading.get(name);
}

/** The highlight.js name for one of our language names, loading its grammar when needed; null: none. */
export async function grammarFor(language) {
  const hljs = window.hljs;
  if (!hljs || !language) return null;
  const name = ALIASES[String(language).toLowerCase()] || String(language).toLowerCase();
  if (hljs.getLanguage(name)) return name;
  if (EXTRA.has(name) && (await loadExtra(name)) && hljs.getLanguage(name)) return name;
  return null;
}

/** A <pre><code> of ``code`` (text), highlighted as ``language`` when highlight.js knows it. */
export async function codeBlock(code, language) {
  const block = el('code', { class: 'hljs' });
  block.textContent = code;
  const pre = el('pre', { class: 'code' }, block);
  const name = code.length <= MAX_HIGHLIGHT ? await grammarFor(language) : null;
  if (name) {
    block.classList.add('language-' + name);
    window.hljs.highlightElement(block);
  }
  return pre;
}
