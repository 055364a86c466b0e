"""Reading one file safely: the rules shared by the watch source, the hook and stdin.

Standard library only, and no ``typing`` at run time: the hook process imports this.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Literal

    SkipReason = Literal["too_large", "binary", "not_utf8", "name_not_utf8", "vanished", "unreadable", "not_a_file",
                         "outside_root", "error"]

#: A NUL byte in this many leading bytes marks a file as binary.
BINARY_SNIFF_BYTES = 8192


def is_inside(path: str, roots: Iterable[str]) -> bool:
    """True when ``path`` equals or lies below one of ``roots`` (all absolute, normalised)."""
    for root in roots:
        if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False




class ReadOk:
    """The file's whole text. ``mtime`` is from the fstat of the descriptor that was read."""

    __slots__ = ("text", "size", "mtime")
    ok = True

    def __init__(self, text: str, size: int, mtime: float) -> None:
        self.text = text
        self.size = size
        self.mtime = mtime

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadOk) and (self.text, self.size, self.mtime) == (other.text, other.size, other.mtime)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # never the text: it may be secret
        return f"ReadOk(size={self.size}, mtime={self.mtime})"


class ReadSkipped:
    """Why the file was not read; ``detail`` never holds file contents."""

    __slots__ = ("reason", "detail")
    ok = False

    def __init__(self, reason: SkipReason, detail: str = "") -> None:
        self.reason: SkipReason = reason
        self.detail = detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadSkipped) and (self.reason, self.detail) == (other.reason, other.detail)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ReadSkipped({self.reason!r}, {self.detail!r})"


if TYPE_CHECKING:
    ReadResult = ReadOk | ReadSkipped

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def read_text_file(path: str | os.PathLike[str], max_bytes: int,
                   roots: Sequence[str] | None = None) -> ReadResult:  # fmt: skip
    """Read ``path`` as UTF-8 text, or say why not.

    * Size is checked with ``fstat`` on the opened descriptor (no stat-then-open race), and at
      most ``max_bytes + 1`` bytes are ever read (a file growing past the limit is "too_large").
    * "binary": a NUL byte in the first ``BINARY_SNIFF_BYTES``; "not_utf8": undecodable.
    * Symlinks: when ``roots`` is given (absolute, normalised, symlink-free paths), a file whose
      real location (checked on the opened descriptor) is outside all of them is "outside_root";
      otherwise links are followed.
    * "vanished" (gone before/while reading), "unreadable" (permission), "not_a_file"
      (directory, FIFO, device, socket), "error" (any other OS error; errno in ``detail``).

    * "name_not_utf8": the path is not valid Unicode (a name of bytes that are not UTF-8, as
      ``os.fsdecode`` gives it): no lineage service can name the file, and a spooled event
      holding it could not be read back.

    Never raises ``OSError``. Non-blocking open, so a FIFO never hangs the caller.
    """
    p = os.fspath(path)
    try:
        p.encode("utf-8")
    except UnicodeEncodeError:
        return ReadSkipped("name_not_utf8", "its name is not valid UTF-8; rename it to track it")
    try:
        if roots is None:
            fd = os.open(p, _OPEN_FLAGS)
        else:
            fd = _open_inside(p, roots)
            if fd is None:
                return ReadSkipped("outside_root", "symlink target outside the watched roots")
    except FileNotFoundError:
        return ReadSkipped("vanished")
    except PermissionError:
        return ReadSkipped("unreadable", "permission denied")
    except IsADirectoryError:
        return ReadSkipped("not_a_file", "directory")
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            return ReadSkipped("vanished", "replaced by a symlink while reading")
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP, errno.ENODEV):
            return ReadSkipped("not_a_file", errno.errorcode.get(exc.errno or 0, ""))
        if exc.errno == errno.ENOTDIR:
            return ReadSkipped("vanished", "a parent is no longer a directory")
        return ReadSkipped("error", errno.errorcode.get(exc.errno or 0, str(exc.errno)))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ReadSkipped("not_a_file", _file_kind(st.st_mode))
        if st.st_size > max_bytes:
            return ReadSkipped("too_large", f"{st.st_size} bytes > {max_bytes}")
        if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        data = _read_at_most(fd, max_bytes + 1)
    except PermissionError:
        return ReadSkipped("unreadable", "permission denied")
    except OSError as exc:
        return ReadSkipped("error", errno.errorcode.get(exc.errno or 0, str(exc.errno)))
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return ReadSkipped("too_large", f"grew past {max_bytes} bytes while reading")
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return ReadSkipped("binary", "NUL byte in the first 8 KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ReadSkipped("not_utf8", f"invalid UTF-8 at byte {exc.start}")
    return ReadOk(text=text, size=len(data), mtime=st.st_mtime)


def _open_inside(path: str, roots: Sequence[str]) -> int | None:
    """Open ``path`` only if the file it names lies inside ``roots``; None when it does not.

    Fast path: open without following a final symlink, then ask the kernel where the opened
    file really is (``/proc/self/fd``; no race with a rename or symlink swap). A final-component
    symlink is resolved and its target opened the same way. Elsewhere ``realpath`` is the check.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS | _NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK) or not _NOFOLLOW:
            raise
        target = os.path.realpath(path)
        if not is_inside(target, roots):
            return None
        fd = os.open(target, _OPEN_FLAGS | _NOFOLLOW)
    real = _fd_path(fd)
    if real is None:
        real = os.path.realpath(path)
    elif real.endswith(" (deleted)") and not os.path.exists(real):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "deleted while opening", path)
    if is_inside(real, roots):
        return fd
    os.close(fd)
    return None


def _fd_path(fd: int) -> str | None:
    if not _HAVE_PROC_FD:
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return real if real.startswith("/") else None


_HAVE_PROC_FD = os.path.isdir("/proc/self/fd")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
