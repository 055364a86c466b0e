"""Deterministic, realistic pattern events for benchmarks and tests (`archive generate`).

Same (events, files, seed) → byte-identical events. Files are spread over several languages;
each file is an edit chain (version n+1 is version n with one function rewritten, added or
removed), and code sizes are log-uniform between 100 B and 50 KB. Plain code (random.Random),
no I/O: the CLI writes what this yields into an archive.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from pattern_tracker.model.events import PatternEvent, build_event

MIN_SIZE, MAX_SIZE = 100, 50_000
WORDS = ("order", "cart", "price", "user", "token", "cache", "retry", "batch", "event", "lineage", "node", "edge",
         "parse", "render", "index", "query", "store", "spool", "delta", "total", "limit", "score", "rank", "merge")

LANGS: dict[str, tuple[str, str]] = {
    # language: (extension, function template with {name}, {arg}, {n}, {word})
    "python": (".py", "def {name}({arg}: int) -> int:\n    \"\"\"{word} step {n}.\"\"\"\n    total = {arg} * {n}\n"
                      "    for i in range({n}):\n        total += i % 7\n    return total\n\n"),
    "typescript": (".ts", "export function {name}({arg}: number): number {{\n  // {word} step {n}\n"
                          "  let total = {arg} * {n};\n  for (let i = 0; i < {n}; i++) total += i % 7;\n  return total;\n}}\n\n"),
    "go": (".go", "func {name}({arg} int) int {{\n\t// {word} step {n}\n\ttotal := {arg} * {n}\n"
                  "\tfor i := 0; i < {n}; i++ {{\n\t\ttotal += i % 7\n\t}}\n\treturn total\n}}\n\n"),
    "rust": (".rs", "pub fn {name}({arg}: i64) -> i64 {{\n    // {word} step {n}\n    let mut total = {arg} * {n};\n"
                    "    for i in 0..{n} {{ total += i % 7; }}\n    total\n}}\n\n"),
    "java": (".java", "    public static int {name}(int {arg}) {{\n        // {word} step {n}\n        int total = {arg} * {n};\n"
                      "        for (int i = 0; i < {n}; i++) total += i % 7;\n        return total;\n    }}\n\n"),
    "sql": (".sql", "-- {word} step {n}\nCREATE VIEW {name} AS\n  SELECT {arg}, COUNT(*) * {n} AS total\n"
                    "  FROM {word}s GROUP BY {arg};\n\n"),
    "yaml": (".yaml", "{name}:\n  {arg}: {n}\n  kind: {word}\n  retries: {n}\n  enabled: true\n"),
}


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}_{rng.choice(WORDS)}_{rng.randrange(1000)}"


def _block(rng: random.Random, template: str) -> str:
    return template.format(name=_ident(rng), arg=rng.choice(WORDS), n=rng.randrange(2, 500), word=rng.choice(WORDS))


def _target_size(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE))))


def _fill(rng: random.Random, template: str, size: int) -> list[str]:
    blocks = [_block(rng, template)]
    while sum(map(len, blocks)) < size:
        blocks.append(_block(rng, template))
    return blocks


def generate(events: int, files: int, seed: int, start: float = 1_767_225_600.0) -> Iterator[PatternEvent]:
    """``events`` events over ``files`` files, in the order they happened (edit chains per file)."""
    if events < 1 or files < 1:
        raise ValueError("events and files must be >= 1")
    rng = random.Random(seed)
    langs = list(LANGS)
    state: list[dict[str, object]] = []
    for f in range(files):
        lang = langs[f % len(langs)]
        ext, template = LANGS[lang]
        state.append({"path": f"/archive/{lang}/{rng.choice(WORDS)}_{f}{ext}", "template": template, "blocks": [],
                      "version": 0, "parent": None, "size": _target_size(rng)})
    at = start
    for i in range(events):
        s = state[rng.randrange(files) if i >= files else i]
        blocks: list[str] = s["blocks"]  # type: ignore[assignment]
        template: str = s["template"]  # type: ignore[assignment]
        if not blocks:
            blocks.extend(_fill(rng, template, int(s["size"])))  # type: ignore[call-overload]
        else:
            op = rng.random()
            if op < 0.6:
                blocks[rng.randrange(len(blocks))] = _block(rng, template)
            elif op < 0.85 or len(blocks) == 1:
                blocks.insert(rng.randrange(len(blocks) + 1), _block(rng, template))
            else:
                blocks.pop(rng.randrange(len(blocks)))
            while sum(map(len, blocks)) > MAX_SIZE and len(blocks) > 1:
                blocks.pop()
        code = "".join(blocks)
        s["version"] = int(s["version"]) + 1  # type: ignore[call-overload]
        at += rng.expovariate(1 / 2.0)  # an edit every ~2 s on average
        ev = build_event(file_path=str(s["path"]), code=code, version=int(s["version"]),  # type: ignore[call-overload]
                         parent_pattern_id=s["parent"], source="replay", occurred_at=round(at, 3),  # type: ignore[arg-type]
                         tool_name=rng.choice(("Write", "Edit", "MultiEdit")), session_id=f"session-{seed}-{i // 500}")
        s["parent"] = ev.pattern_id
        yield ev
