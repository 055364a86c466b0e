"""Language detection from file names (extension first, then well-known file names)."""

from __future__ import annotations

import os

_BY_EXTENSION: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".sc": "scala",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
    ".swift": "swift",
    ".m": "objective-c", ".mm": "objective-c",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl", ".pm": "perl",
    ".lua": "lua",
    ".r": "r",
    ".jl": "julia",
    ".dart": "dart",
    ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".hrl": "erlang",
    ".hs": "haskell",
    ".ml": "ocaml", ".mli": "ocaml",
    ".clj": "clojure", ".cljs": "clojure",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".ps1": "powershell",
    ".sql": "sql",
    ".html": "html", ".htm": "html",
    ".css": "css", ".scss": "scss", ".sass": "scss", ".less": "less",
    ".vue": "vue", ".svelte": "svelte",
    ".json": "json", ".jsonc": "json",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".xml": "xml",
    ".md": "markdown", ".markdown": "markdown", ".rst": "restructuredtext",
    ".ipynb": "jupyter",
    ".tf": "terraform", ".hcl": "hcl",
    ".proto": "protobuf",
    ".graphql": "graphql", ".gql": "graphql",
    ".zig": "zig", ".nim": "nim",
}

_BY_NAME: dict[str, str] = {
    "dockerfile": "dockerfile",
    "makefile": "makefile", "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "gemfile": "ruby", "rakefile": "ruby",
    "jenkinsfile": "groovy",
    ".bashrc": "shell", ".zshrc": "shell", ".profile": "shell",
}


def detect_language(path: str) -> str | None:
    """Best guess at the language of ``path``; None when unknown (the service then stores null)."""
    name = os.path.basename(path).lower()
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith("dockerfile."):
        return "dockerfile"
    return _BY_EXTENSION.get(os.path.splitext(name)[1])
