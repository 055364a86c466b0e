"""docs/benchmarks.md regenerated from the latest results: its figures are the run's, never copied by hand.

    python -m benchmarks.docs_page        # after benchmarks ran (benchmarks.run_all calls it)

The page's prose stays as written; each generated block between
``<!-- generated:KEY -->`` and ``<!-- /generated:KEY -->`` is replaced:

* ``targets``: issue 14's targets beside their measured figures (``benchmarks.targets``);
* ``results:NAME``: the table benchmarks/results/NAME.md holds, with the time it was measured.
"""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import targets
from benchmarks._common import RESULTS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_BLOCK = re.compile(r"(<!-- generated:(?P<key>[\w:]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=key) -->)", re.S)
_STAMP = re.compile(r"<!-- measured (.*?) -->\n")


def results_block(name: str) -> str:
    path = RESULTS / f"{name}.md"
    if not path.exists():
        return f"_No results yet: run `python -m benchmarks.{name}`._\n"
    text = path.read_text()
    stamp = _STAMP.match(text)
    body = (text[stamp.end():] if stamp else text).strip()
    # The page has its own headings: a table's own "### title" becomes its bold caption.
    body = re.sub(r"^### (.*)$", r"**\1**", body, count=1, flags=re.M)
    when = f"\n\n_Measured {stamp.group(1)}; table: [`benchmarks/results/{name}.md`](../benchmarks/results/{name}.md)._" \
        if stamp else ""
    return body + when + "\n"


def block(key: str, since: str | None) -> str:
    if key == "targets":  # under the page's own heading for it
        return re.sub(r"^### .*\n\n", "", targets.table(since), count=1) + "\n"
    if key.startswith("results:"):
        return results_block(key.removeprefix("results:"))
    raise ValueError(f"docs/benchmarks.md: unknown generated block {key!r}")


def regenerate(since: str | None = None, page: Path = PAGE) -> int:
    """Rewrite every generated block of ``page``; returns how many there were."""
    text = page.read_text()
    count = 0

    def fill(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return m.group(1) + block(m.group("key"), since) + m.group(4)

    page.write_text(_BLOCK.sub(fill, text))
    return count


if __name__ == "__main__":
    print(f"{PAGE}: {regenerate()} generated block(s) rewritten")
