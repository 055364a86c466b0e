"""Files never captured: ``is_denied`` matches a path against ``redaction.deny_globs``.

On the hook's path (every edit, before the file is read): standard library ``fnmatch`` and
``os`` only, nothing compiled at import.
"""

from __future__ import annotations

import fnmatch
import os

TYPE_CHECKING = False  # no `typing` at run time: the hook pays for every import
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["is_denied"]


def is_denied(path: str, deny_globs: Iterable[str]) -> bool:
    """True when the file at ``path`` must never be captured.

    A glob without "/" is matched against the file's base name; a glob with "/" against the
    end of the normalised path (``config/secrets/*`` matches ``/repo/config/secrets/x.yaml``),
    or against the whole path when it starts with "/". Matching is ``fnmatch.fnmatch``
    (case-sensitive on POSIX, case-insensitive on Windows).
    """
    if not path:
        return False
    p = path
    if os.sep != "/":
        p = p.replace(os.sep, "/")
    if os.altsep and os.altsep != "/":
        p = p.replace(os.altsep, "/")
    p = os.path.normpath(p)
    if os.sep != "/":
        p = p.replace(os.sep, "/")
    base = p.rstrip("/").rsplit("/", 1)[-1]
    for glob in deny_globs:
        if not glob:
            continue
        if "/" in glob:
            if fnmatch.fnmatch(p, glob):
                return True
            if not glob.startswith("/") and fnmatch.fnmatch(p, "*/" + glob):
                return True
        elif fnmatch.fnmatch(base, glob):
            return True
    return False
