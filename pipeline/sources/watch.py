"""The ``watch`` source: the current text of files changed on disk under some roots.

A source only produces; it knows nothing of versions or delivery. The runtime consumes it::

    watcher = WatchSource(paths=["."], settings=WatchSettings(), stats=WatchStats())
    async with contextlib.aclosing(watcher.changes(stop_event)) as changes:
        async for raw in changes:            # raw: FileChange(path, code, occurred_at, ...)
            ...                              # store.assign_version drops unchanged content

Order of work in ``changes()`` (the order closes the gaps in which watchfiles would miss a change):

1. Start ``watchfiles.awatch`` and wait until its notifier exists, so a write made during the
   scan is caught live (a duplicate of a scanned file is harmless: unchanged content is dropped
   downstream).
2. Initial scan (``initial_scan``): every tracked file in the trees, sorted by path. This is how
   changes made while we were not running are caught.
3. Live changes, in path order within each debounced batch. A deleted file yields nothing (it is
   counted); a directory that appears, or a ``.gitignore`` that changes, is rescanned so files
   moved in or newly re-included are not missed.

Walking and reading run in worker threads, so a large tree never blocks the event loop.
Setting ``stop_event`` ends the iterator within ``step_ms`` (+ at most one read batch); the
watch thread has finished and the notifier is closed when the iterator returns.

Limitation: watchfiles watches every directory below a root (inotify cannot exclude ignored
trees such as ``node_modules``); their events are filtered out. Huge ignored trees can exhaust
``fs.inotify.max_user_watches`` — the error then names the sysctl and ``force_polling``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Annotated, Any

import msgspec
import watchfiles

from pattern_tracker.sources.files import DEFAULT_IGNORE, GITIGNORE, IgnoreRules, WatchStats
from pattern_tracker.core.readfile import ReadOk, is_inside, read_text_file

__all__ = ["FileChange", "WatchError", "WatchSettings", "WatchSource", "WatchStats"]

logger = logging.getLogger("pattern_tracker.watch")

#: Files read per worker-thread call (scan and live batches).
READ_BATCH = 64

# How loud a skipped file is: a name no service can hold is a file the user thinks is tracked.
_SKIP_LEVEL = {"name_not_utf8": logging.WARNING, "unreadable": logging.INFO, "error": logging.INFO,
               "too_large": logging.INFO}


def shown_path(path: str) -> str:
    """``path`` as a log line can hold it: bytes of a name that are not UTF-8 as ``\\xNN``."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


# watchfiles (its Rust notifier) fails the whole watch on an event for a file whose name is not
# UTF-8; the watch restarts and rescans instead, at most this many times in RESTART_WINDOW seconds.
MAX_RESTARTS = 20
RESTART_WINDOW = 60.0


class _Undecodable(Exception):
    """The notifier stopped on a file name that is not UTF-8 (``path``: as watchfiles shows it)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _undecodable_path(exc: BaseException) -> str | None:
    """The name watchfiles could not decode, when that is what stopped it (possibly inside the
    exception group of its task group), else None."""
    if type(exc).__name__ == "WatchfilesRustInternalError" and "Unable to decode path" in str(exc):
        text = str(exc)
        start = text.find('"')
        return text[start + 1:text.rfind('"')] if 0 <= start < text.rfind('"') else text
    for inner in getattr(exc, "exceptions", ()):
        found = _undecodable_path(inner)
        if found is not None:
            return found
    return None


class WatchError(Exception):
    """A watch problem a user can act on; the message is one line naming the path."""


class WatchSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``sources.watch`` config section."""

    paths: list[str] = msgspec.field(default_factory=lambda: ["."])
    ignore: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_IGNORE))
    use_gitignore: bool = True
    max_file_size: Annotated[int, msgspec.Meta(ge=0)] = 1024 * 1024
    debounce_ms: Annotated[int, msgspec.Meta(ge=0)] = 50
    step_ms: Annotated[int, msgspec.Meta(ge=1)] = 50
    force_polling: bool = False
    initial_scan: bool = True


class FileChange(msgspec.Struct, frozen=True, kw_only=True):
    """The current text of one file. ``occurred_at`` is when we observed it (wall clock);
    ``mtime`` is the file's modification time; ``initial`` marks the initial scan/rescans."""

    path: str
    code: str
    occurred_at: float
    mtime: float = 0.0
    initial: bool = False


class _StopFlag:
    """What awatch polls from its thread: the caller's event or our own close.

    awatch sets its stop event when cancelled; a private flag keeps that from setting the
    caller's ``stop_event`` as a side effect.
    """

    __slots__ = ("_outer", "_set")

    def __init__(self, outer: asyncio.Event) -> None:
        self._outer = outer
        self._set = False

    def is_set(self) -> bool:
        return self._set or self._outer.is_set()

    def set(self) -> None:
        self._set = True


_DONE = object()


class WatchSource:
    """Yields ``FileChange`` for every tracked file at start and for every live change.

    ``paths`` overrides ``settings.paths``; relative paths resolve against the current directory.
    Roots are resolved to their real paths once, so scan and live events name a file the same way.
    Raises ``WatchError`` when a root does not exist or is not a directory.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]] | None = None,
                 settings: WatchSettings | None = None, stats: WatchStats | None = None) -> None:  # fmt: skip
        self.settings = settings or WatchSettings()
        self.stats = stats if stats is not None else WatchStats()
        raw = list(paths) if paths is not None else list(self.settings.paths)
        if not raw:
            raise WatchError("sources.watch.paths is empty: name at least one directory to watch")
        roots: list[str] = []
        for p in raw:
            root = os.path.realpath(os.path.expanduser(os.fspath(p)))
            if root not in roots:
                roots.append(root)
        # A root nested in another is already covered by it.
        self.roots: list[str] = [r for r in roots if not any(o != r and is_inside(r, (o,)) for o in roots)]
        self._check_roots()
        self.rules: dict[str, IgnoreRules] = {
            r: IgnoreRules(r, self.settings.ignore, self.settings.use_gitignore) for r in self.roots
        }
        #: Set once the live watcher runs and the initial scan has been yielded.
        self.ready = asyncio.Event()
        self._said_names: set[str] = set()  # files skipped for a name that is not UTF-8, already logged

    # -- public ---------------------------------------------------------------------------------

    async def changes(self, stop_event: asyncio.Event) -> AsyncIterator[FileChange]:
        """Initial scan then live changes, until ``stop_event`` is set. See the module docstring.

        A file whose name is not UTF-8 stops watchfiles' notifier (it cannot name it): the watch
        starts again and rescans the roots, so the changes of the batch it dropped are read
        (unchanged files are dropped downstream); the file itself is skipped with one warning.
        """
        self._check_roots()
        self.ready.clear()
        scan, first = self.settings.initial_scan, True
        restarts: list[float] = []
        while True:
            try:
                async with contextlib.aclosing(self._watching(stop_event, scan, first)) as changes:
                    async for change in changes:
                        yield change
                return
            except _Undecodable as exc:
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
                if len(restarts) > MAX_RESTARTS:
                    raise WatchError(f"watching {', '.join(self.roots)} failed: file names that are not UTF-8 "
                                     f"stopped the watcher {len(restarts)} times in {RESTART_WINDOW:.0f}s "
                                     f"(e.g. {exc.path}): rename them") from exc
                logger.info("the watcher stopped on a file name that is not UTF-8 (%s): restarted, rescanning", exc.path)
                scan, first = True, False

    async def _watching(self, stop_event: asyncio.Event, scan: bool, first: bool) -> AsyncIterator[FileChange]:
        """One life of the notifier: (with ``scan``) a scan of the roots, then live changes."""
        flag = _StopFlag(stop_event)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        agen = watchfiles.awatch(
            *self.roots,
            watch_filter=self._watch_filter,
            debounce=self.settings.debounce_ms,
            step=self.settings.step_ms,
            stop_event=flag,  # type: ignore[arg-type]  # awatch only calls is_set()/set()
            force_polling=self.settings.force_polling,
            ignore_permission_denied=True,
        )
        pump = asyncio.create_task(self._pump(agen, queue), name="watch-pump")
        stop_wait: asyncio.Task[Any] | None = None
        get: asyncio.Future[Any] | None = None
        try:
            await self._until_watching(agen, pump, queue)
            if first:
                logger.info("watching %s", ", ".join(self.roots))
            if scan:
                async for change in self._scan(self.roots, flag, counter="scanned"):
                    if flag.is_set():
                        return
                    yield change
            self.ready.set()
            stop_wait = asyncio.create_task(stop_event.wait(), name="watch-stop")
            while not flag.is_set():
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                batch = get.result()
                if batch is _DONE:
                    return
                if isinstance(batch, BaseException):
                    undecodable = _undecodable_path(batch)
                    if undecodable is not None:
                        raise _Undecodable(undecodable) from batch
                    raise self._watch_error(batch) from batch
                async for change in self._live(batch, flag):
                    if flag.is_set():
                        return
                    yield change
        finally:
            flag.set()
            for waiter in (get, stop_wait):
                if waiter is not None and not waiter.done():
                    waiter.cancel()
            await self._finish(pump, agen, queue)

    # -- watcher plumbing -----------------------------------------------------------------------

    async def _pump(self, agen: AsyncIterator[set[tuple[watchfiles.Change, str]]], queue: asyncio.Queue[Any]) -> None:
        try:
            async for batch in agen:
                await queue.put(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises WatchError
            await queue.put(exc)
            return
        await queue.put(_DONE)

    async def _until_watching(self, agen: Any, pump: asyncio.Task[None], queue: asyncio.Queue[Any]) -> None:
        """Return once awatch has built its notifier (it then awaits its watch thread).

        awatch builds the notifier synchronously on its first step, before its first await, so
        the generator being suspended in an await means the notifier is live and recording.
        A notifier that could not be built (e.g. inotify watch limit) raises ``WatchError`` here.
        """
        for _ in range(1000):
            if pump.done() or getattr(agen, "ag_await", None) is not None:
                break
            await asyncio.sleep(0)
        if pump.done() and not queue.empty():
            first = queue.get_nowait()
            if isinstance(first, BaseException):
                raise self._watch_error(first) from first
            queue.put_nowait(first)  # pragma: no cover - a batch before we even looked

    async def _finish(self, pump: asyncio.Task[None], agen: Any, queue: asyncio.Queue[Any]) -> None:
        """Wait for awatch to see the stop flag (≤ step_ms) so its thread and notifier are gone.

        The queue is drained meanwhile so the pump never blocks on a full queue; if awatch does
        not stop in time the pump is cancelled (awatch then stops after its current step).
        """
        deadline = time.monotonic() + max(1.0, 4 * self.settings.step_ms / 1000)
        while not pump.done():
            while not queue.empty():
                queue.get_nowait()
            if time.monotonic() > deadline:
                pump.cancel()
                deadline = float("inf")
            await asyncio.wait({pump}, timeout=0.005)
        try:
            await agen.aclose()
        except Exception:  # noqa: BLE001 - cleanup only
            pass

    def _watch_error(self, exc: BaseException) -> WatchError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        roots = ", ".join(self.roots)
        if "inotify" in text.lower() or "no space left" in text.lower() or "too many" in text.lower():
            return WatchError(
                f"cannot watch {roots}: {text} (raise fs.inotify.max_user_watches, "
                "ignore fewer directories, or set sources.watch.force_polling: true)"
            )
        return WatchError(f"watching {roots} failed: {text}")

    def _check_roots(self) -> None:
        for root in self.roots:
            if not os.path.exists(root):
                raise WatchError(f"watch path does not exist: {root}")
            if not os.path.isdir(root):
                raise WatchError(f"watch path is not a directory: {root}")

    def _root_of(self, path: str) -> str | None:
        for root in self.roots:
            if is_inside(path, (root,)):
                return root
        return None

    def _watch_filter(self, change: watchfiles.Change, path: str) -> bool:
        """Runs for each raw event; drops ignored paths (counted) but keeps .gitignore changes."""
        root = self._root_of(path)
        if root is None:
            return False
        if os.path.basename(path) == GITIGNORE:
            return True  # its rules must be reloaded, even when the file itself is ignored
        is_dir = False if change is watchfiles.Change.deleted else None
        if self.rules[root].matches(path, is_dir=is_dir):
            self.stats.incr("ignored")
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("ignored %s (%s)", path, change.name)
            return False
        return True

    # -- scanning and reading ---------------------------------------------------------------------

    async def _scan(self, dirs: Sequence[str], flag: _StopFlag, counter: str) -> AsyncIterator[FileChange]:
        paths = await asyncio.to_thread(self._collect, list(dirs), flag.is_set)
        for i in range(0, len(paths), READ_BATCH):
            if flag.is_set():
                return
            for change in await asyncio.to_thread(self._read_batch, paths[i : i + READ_BATCH], counter, True):
                yield change

    def _collect(self, dirs: list[str], stopped: Callable[[], bool]) -> list[str]:
        """Every tracked regular file (or in-root file symlink) below ``dirs``, sorted."""
        found: set[str] = set()
        for top in dirs:
            root = self._root_of(top)
            if root is None:
                continue
            rules = self.rules[root]
            if top != root and rules.matches(top, is_dir=True):
                continue
            for path in self._walk(top, rules, stopped):
                found.add(path)
        return sorted(found)

    def _walk(self, top: str, rules: IgnoreRules, stopped: Callable[[], bool]) -> Iterator[str]:
        stack = [top]
        while stack:
            if stopped():
                return
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    entries = list(it)
            except FileNotFoundError:
                continue  # vanished while walking
            except PermissionError:
                self.stats.incr("unreadable")
                logger.info("skipped directory %s: permission denied", d)
                continue
            except OSError as exc:
                self.stats.incr("errors")
                logger.info("skipped directory %s: %s", d, exc.strerror or exc)
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    is_link = not is_dir and entry.is_symlink()
                    is_file = is_link or entry.is_file(follow_symlinks=False)
                except OSError:
                    continue
                if is_link and os.path.isdir(entry.path):
                    logger.debug("skipped %s: symlink to a directory is not followed", entry.path)
                    continue
                if not (is_dir or is_file):
                    self.stats.incr("skipped_not_a_file")
                    logger.debug("skipped %s: not a regular file", entry.path)
                    continue
                if rules.matches(entry.path, is_dir=is_dir):
                    self.stats.incr("ignored")
                    logger.debug("ignored %s", entry.path)
                    continue
                if is_dir:
                    stack.append(entry.path)
                else:
                    yield entry.path

    def _read_batch(self, paths: Sequence[str], counter: str, initial: bool,
                    deleted: frozenset[str] = frozenset()) -> list[FileChange]:  # fmt: skip
        out: list[FileChange] = []
        for path in paths:
            result = read_text_file(path, self.settings.max_file_size, roots=self.roots)
            if isinstance(result, ReadOk):
                self.stats.incr(counter)
                out.append(FileChange(path=path, code=result.text, occurred_at=time.time(),
                                      mtime=result.mtime, initial=initial))  # fmt: skip
                continue
            if result.reason == "vanished" and path in deleted:
                self._deleted(path)
                continue
            self.stats.skipped(result.reason)
            level = _SKIP_LEVEL.get(result.reason, logging.DEBUG)
            if result.reason == "name_not_utf8":  # said once a run: every rescan meets it again
                level = logging.DEBUG if path in self._said_names else level
                self._said_names.add(path)
            if logger.isEnabledFor(level):
                logger.log(level, "skipped %s: %s%s", shown_path(path), result.reason,
                           f" ({result.detail})" if result.detail else "")
        return out

    def _deleted(self, path: str) -> None:
        self.stats.incr("deleted")
        logger.debug("deleted %s", path)

    async def _live(self, batch: set[tuple[watchfiles.Change, str]], flag: _StopFlag) -> AsyncIterator[FileChange]:
        by_path: dict[str, set[watchfiles.Change]] = {}
        for change, path in batch:
            by_path.setdefault(path, set()).add(change)
        files: list[str] = []
        new_dirs: list[str] = []
        deleted: set[str] = set()
        # .gitignore changes first: the rest of this batch was filtered with the old rules.
        gitignores = [p for p in by_path if os.path.basename(p) == GITIGNORE]
        for path in gitignores:
            root = self._root_of(path)
            if root is not None:
                self.rules[root].invalidate(path)
                logger.info("reloaded %s", path)
                new_dirs.append(os.path.dirname(path))  # files it no longer ignores: rescan
        for path in sorted(by_path):
            kinds = by_path[path]
            if path in self.roots:
                if watchfiles.Change.deleted in kinds and not os.path.isdir(path):
                    logger.warning("watched root %s was removed: no more changes will be seen there", path)
                continue
            if gitignores:
                root = self._root_of(path)
                if root is not None and self.rules[root].matches(path, is_dir=False):
                    self.stats.incr("ignored")
                    continue
            if kinds == {watchfiles.Change.deleted} and not os.path.lexists(path):
                self._deleted(path)
                continue
            if watchfiles.Change.deleted in kinds:
                deleted.add(path)
            if os.path.isdir(path):
                if watchfiles.Change.added in kinds and not os.path.islink(path):
                    new_dirs.append(path)  # moved/created directory: its files raise no events
                continue  # directory symlinks are not followed (as in the scan)
            files.append(path)
        for i in range(0, len(files), READ_BATCH):
            if flag.is_set():
                return
            chunk = files[i : i + READ_BATCH]
            for change in await asyncio.to_thread(self._read_batch, chunk, "changed", False, frozenset(deleted)):
                yield change
        if new_dirs and not flag.is_set():
            async for change in self._scan(_outermost(new_dirs), flag, counter="scanned"):
                yield change


def _outermost(dirs: Sequence[str]) -> list[str]:
    unique = sorted(set(dirs))
    return [d for d in unique if not any(o != d and is_inside(d, (o,)) for o in unique)]

