"""Which paths the watch source ignores, and its counters (reading a file: ``readfile``).

* ``IgnoreRules`` — built-in names (VCS dirs, caches, virtualenvs, our own LMDB files, editor
  temp files) plus ``.gitignore`` files with git semantics, each relative to its own directory.
  ``pathspec`` (~15 ms to import) is imported only once a ``.gitignore`` exists.
* ``WatchStats`` — counters by reason, safe to bump from worker threads.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

from pattern_tracker.core.readfile import is_inside

__all__ = ["ALWAYS_IGNORED", "DEFAULT_IGNORE", "IgnoreRules", "WatchStats"]

#: Default of ``sources.watch.ignore``: matched against every path component.
DEFAULT_IGNORE: tuple[str, ...] = (
    ".git", ".hg", ".svn", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox",
    ".nox", ".venv", "venv", "env", "node_modules", "dist", "build", "target", ".idea", ".vscode",
    "*.pyc", "*.egg-info", ".DS_Store",
)  # fmt: skip

#: Always ignored, whatever the configuration: our own LMDB files and editor temp/backup files
#: (vim swap files and its ``4913`` write probe, emacs ``foo~`` and ``.#foo`` locks, JetBrains
#: safe-write temporaries).
ALWAYS_IGNORED: tuple[str, ...] = (
    "data.mdb", "lock.mdb",
    "*.swp", "*.swo", "*.swx", "*~", ".#*", "4913",
    "*___jb_tmp___", "*___jb_old___",
)  # fmt: skip

GITIGNORE = ".gitignore"


# ---------------------------------------------------------------------------------------------
# Ignore rules


class _GitignoreFile:
    __slots__ = ("key", "spec")

    def __init__(self, key: tuple[int, int, int] | None, spec: pathspec.GitIgnoreSpec | None) -> None:
        self.key = key  # (inode, size, mtime_ns) of the file when loaded; None when absent
        self.spec = spec  # None when absent, unreadable or empty


class IgnoreRules:
    """Decide whether a path under ``root`` is ignored.

    Two kinds of rule:

    * Name globs (``ignore_globs`` plus ``ALWAYS_IGNORED``), fnmatch-style and case-sensitive,
      matched against *every* component of the path relative to ``root`` — so ``node_modules``
      ignores the directory and everything below it. A glob that contains ``/`` is matched
      against the root-relative path (and each of its leading directory paths) instead.
    * ``.gitignore`` files (``use_gitignore``): the one at ``root``, those in subdirectories, and
      — when ``root`` lies inside a git work tree — those from the work-tree top down to ``root``.
      Each is applied relative to its own directory with git semantics (``pathspec.GitIgnoreSpec``:
      last match wins, ``!negation``, deeper files override shallower ones, a file below an
      ignored directory cannot be re-included). ``.git/info/exclude`` and the global
      ``core.excludesFile`` are not read.

    Parsed ``.gitignore`` files are cached per directory. ``invalidate(path)`` drops the cache for
    one ``.gitignore`` (the watch source calls it when one changes); ``refresh()`` re-validates
    every cached file by ``stat`` (cheap; for long-lived users without change events).

    Thread-safe: one instance may be used from the event loop and from worker threads.
    """

    def __init__(self, root: str | os.PathLike[str], ignore_globs: Iterable[str] = DEFAULT_IGNORE,
                 use_gitignore: bool = True) -> None:  # fmt: skip
        self.root = os.path.normpath(os.path.abspath(os.fspath(root)))
        self.use_gitignore = use_gitignore
        globs = [g for g in (*ignore_globs, *ALWAYS_IGNORED) if g]
        name_globs = [g.rstrip("/") for g in globs if "/" not in g.rstrip("/")]
        path_globs = [g.strip("/") for g in globs if "/" in g.rstrip("/")]
        self._name_re = _compile_globs(name_globs)
        self._path_re = _compile_globs(path_globs)
        self._lock = threading.RLock()
        self._files: dict[str, _GitignoreFile] = {}  # directory -> parsed .gitignore
        self._dir_cache: dict[str, bool] = {}  # root-relative dir -> ignored?
        # .gitignore files above root (inside the same git work tree) apply too.
        self._outer_dirs: list[str] = _outer_gitignore_dirs(self.root) if use_gitignore else []

    # -- public -----------------------------------------------------------------------------

    def matches(self, path: str | os.PathLike[str], is_dir: bool | None = None) -> bool:
        """True when ``path`` (absolute, or relative to ``root``) is ignored.

        ``is_dir`` tells whether ``path`` is a directory (for ``dir/``-only gitignore patterns);
        None means "look at the disk". A path outside ``root`` is judged by its file name only
        (name globs; no ``.gitignore`` applies to it).
        """
        p = os.fspath(path)
        full = os.path.normpath(p if os.path.isabs(p) else os.path.join(self.root, p))
        if full == self.root:
            return False
        if not is_inside(full, (self.root,)):
            return bool(self._name_re and self._name_re.match(os.path.basename(full)))
        rel = full[len(self.root.rstrip(os.sep)) + 1 :]
        parent, _, _name = rel.rpartition(os.sep)
        if parent and self._dir_ignored(parent):
            return True
        if is_dir is None:
            is_dir = os.path.isdir(full)
        return self._entry_ignored(rel, is_dir)

    def invalidate(self, gitignore_path: str | os.PathLike[str] | None = None) -> None:
        """Forget the parsed ``.gitignore`` at ``gitignore_path`` (all of them when None)."""
        with self._lock:
            if gitignore_path is None:
                self._files.clear()
            else:
                self._files.pop(os.path.dirname(os.path.abspath(os.fspath(gitignore_path))), None)
            self._dir_cache.clear()

    def refresh(self) -> bool:
        """Re-validate every cached ``.gitignore`` by stat; True when any of them changed."""
        changed = False
        with self._lock:
            for directory, cached in list(self._files.items()):
                if _stat_key(os.path.join(directory, GITIGNORE)) != cached.key:
                    del self._files[directory]
                    changed = True
            if changed:
                self._dir_cache.clear()
        return changed

    # -- internals ----------------------------------------------------------------------------

    def _dir_ignored(self, rel_dir: str) -> bool:
        """Is the root-relative directory ``rel_dir`` (or one of its parents) ignored? Memoised."""
        cached = self._dir_cache.get(rel_dir)
        if cached is not None:
            return cached
        parent, _, _ = rel_dir.rpartition(os.sep)
        result = (bool(parent) and self._dir_ignored(parent)) or self._entry_ignored(rel_dir, True)
        with self._lock:
            if len(self._dir_cache) > 65536:
                self._dir_cache.clear()
            self._dir_cache[rel_dir] = result
        return result

    def _entry_ignored(self, rel: str, is_dir: bool) -> bool:
        """Is this one entry ignored by its own name/path (parents are checked by the caller)?"""
        name = rel.rpartition(os.sep)[2]
        if self._name_re is not None and self._name_re.match(name):
            return True
        if self._path_re is not None and self._path_re.match(rel.replace(os.sep, "/")):
            return True
        if not self.use_gitignore:
            return False
        return self._gitignored(rel, is_dir)

    def _gitignored(self, rel: str, is_dir: bool) -> bool:
        full = os.path.join(self.root, rel)
        # Directories whose .gitignore may apply, deepest first.
        dirs: list[str] = []
        d = os.path.dirname(full)
        while True:
            dirs.append(d)
            if d == self.root:
                break
            d = os.path.dirname(d)
        dirs.extend(reversed(self._outer_dirs))
        for directory in dirs:
            spec = self._spec(directory)
            if spec is None:
                continue
            sub = full[len(directory.rstrip(os.sep)) + 1 :].replace(os.sep, "/")
            if is_dir:
                sub += "/"
            include = spec.check_file(sub).include
            if include is not None:
                return bool(include)
        return False

    def _spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        cached = self._files.get(directory)
        if cached is not None:
            return cached.spec
        path = os.path.join(directory, GITIGNORE)
        key = _stat_key(path)
        spec: pathspec.GitIgnoreSpec | None = None
        if key is not None:
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    lines = fh.read().splitlines()
                if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
                    import pathspec  # noqa: PLC0415 - lazy: costs ~15 ms, only needed with a .gitignore

                    spec = pathspec.GitIgnoreSpec.from_lines(lines)
            except (OSError, ValueError):
                spec = None  # unreadable or malformed: ignore the file, as git does with bad lines
        with self._lock:
            self._files[directory] = _GitignoreFile(key, spec)
        return spec


def _compile_globs(globs: Sequence[str]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in dict.fromkeys(globs)))


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _outer_gitignore_dirs(root: str) -> list[str]:
    """Directories above ``root`` up to its git work-tree top (outermost first); [] if none."""
    outer: list[str] = []
    d = root
    while True:
        if os.path.exists(os.path.join(d, ".git")):
            return list(reversed(outer)) if d != root else []
        parent = os.path.dirname(d)
        if parent == d:
            return []  # not in a git work tree: only root and below apply
        d = parent
        outer.append(d)


# ---------------------------------------------------------------------------------------------
# Counters


class WatchStats:
    """Counters by reason; ``as_dict()`` is what telemetry/CLI read. Thread-safe."""

    NAMES: tuple[str, ...] = (
        "scanned",  # files read by the initial scan (and rescans of new/re-included directories)
        "changed",  # files read after a live change
        "skipped_binary",
        "skipped_too_large",
        "skipped_not_utf8",
        "skipped_name_not_utf8",  # the file's name is not valid UTF-8
        "skipped_not_a_file",
        "skipped_outside_root",
        "vanished",  # gone between the change and the read
        "unreadable",  # permission denied
        "ignored",  # by name globs / .gitignore (pruned directories count once)
        "deleted",
        "errors",
    )
    _BY_REASON: dict[str, str] = {
        "too_large": "skipped_too_large",
        "binary": "skipped_binary",
        "not_utf8": "skipped_not_utf8",
        "name_not_utf8": "skipped_name_not_utf8",
        "not_a_file": "skipped_not_a_file",
        "outside_root": "skipped_outside_root",
        "vanished": "vanished",
        "unreadable": "unreadable",
        "error": "errors",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(self.NAMES, 0)

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def skipped(self, reason: str) -> None:
        """Count one ``ReadSkipped.reason``."""
        self.incr(self._BY_REASON.get(reason, "errors"))

    def __getitem__(self, name: str) -> int:
        return self._counts.get(name, 0)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __repr__(self) -> str:
        nonzero = {k: v for k, v in self.as_dict().items() if v}
        return f"WatchStats({nonzero})"
