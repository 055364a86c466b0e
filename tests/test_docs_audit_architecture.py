"""docs/architecture.md's module map checked against the tree: each module in one line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")

# The module map's sections (### `layer` — folder/) that list a folder's modules one row each.
FOLDERS = {
    "core": "pipeline/core", "model": "pipeline/model", "settings": "pipeline/settings",
    "telemetry": "pipeline/telemetry", "operators": "operators", "sinks": "sinks", "state": "pipeline/state",
    "runtime": "pipeline/runtime", "sources": "pipeline/sources", "usecases": "pipeline/usecases",
    "service": "pipeline/service", "web": "pipeline/web",
}


def _documented() -> dict[str, set[str]]:
    """Layer → the module names of its table (the first column's `name`)."""
    out: dict[str, set[str]] = {}
    for section in re.split(r"^### ", DOC, flags=re.MULTILINE)[1:]:
        m = re.match(r"`(\w+)`", section)
        if m and m.group(1) in FOLDERS:
            out[m.group(1)] = set(re.findall(r"^\| `(\w+)`", section, flags=re.MULTILINE))
    return out


def test_the_module_map_names_every_module_and_only_modules_that_exist() -> None:
    documented = _documented()
    assert set(documented) == set(FOLDERS)
    problems = []
    for layer, folder in FOLDERS.items():
        on_disk = {p.stem for p in (ROOT / folder).glob("*.py") if p.stem != "__init__"}
        named = documented[layer] - {layer}  # the package's own row (`telemetry` (`__init__`))
        problems += [f"{folder}/{m}.py is not in the module map" for m in sorted(on_disk - named)]
        problems += [f"the module map names {layer}.{m}, which does not exist" for m in sorted(named - on_disk)]
    assert not problems, "\n".join(problems)
