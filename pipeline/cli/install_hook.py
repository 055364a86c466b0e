"""``pattern-tracker install-hook`` / ``uninstall-hook``: our PostToolUse entry in Claude Code settings.

    install-hook   [--user | --local [DIR] | --project [DIR]] [--command CMD] [--dry-run]
    uninstall-hook [--user | --local [DIR] | --project [DIR]] [--dry-run]

The scopes are Claude Code's own: ``--user`` is ``~/.claude/settings.json`` (the default: the
command we write is this machine's absolute path to the console script, which belongs to this
user); ``--local`` is ``DIR/.claude/settings.local.json`` (this user, one project, not meant to be
committed); ``--project`` is ``DIR/.claude/settings.json``, the file teams commit: written only
when asked, because an absolute venv path there breaks the hook for everyone else.
``uninstall-hook`` without a flag removes our entry from every one of those files (user, and the
current directory's local and shared files), so it finds the hook wherever install put it.

The settings logic lives in :mod:`pattern_tracker.usecases.claude_settings`; this module resolves paths and
the command, loads ``hook.timeout`` from the configuration and reports one line per file. Exit
codes: 0 ok (also when there is nothing to uninstall), 1 a file cannot be read, parsed or written
(it is left untouched), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from pattern_tracker.usecases.claude_settings import (
    EVENT,
    SettingsError,
    find_our_hooks,
    install_hook,
    is_our_command,
    read_settings,
    render_settings,
    uninstall_hook,
    write_settings,
)
from pattern_tracker.cli.support import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError

SCRIPT = "pattern-tracker"
WHAT = f"the pattern-tracker {EVENT} hook"


SHARED_WHY = (
    "Teams commit .claude/settings.json, and the hook command is this machine's absolute path to "
    "pattern-tracker (its virtualenv): in the shared file that path fails on every edit for everyone else."
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``install-hook`` and ``uninstall-hook`` to the ``pattern-tracker`` subparsers."""

    def target_flags(p: argparse.ArgumentParser, uninstall: bool) -> None:
        where = p.add_mutually_exclusive_group()
        default = " (default: every file below that holds it)" if uninstall else " (the default)"
        where.add_argument("--user", action="store_true",
                           help=f"~/.claude/settings.json: your own settings, every project{'' if uninstall else default}")
        where.add_argument("--local", metavar="DIR", nargs="?", const=".", default=None,
                           help="DIR/.claude/settings.local.json: your own settings for one project, not committed "
                           "(default DIR: the current directory)")
        shared = "" if uninstall else "; written only with this flag, see above"
        where.add_argument("--project", metavar="DIR", nargs="?", const=".", default=None,
                           help="DIR/.claude/settings.json: the project's SHARED settings, committed by teams "
                           f"(default DIR: the current directory){shared}")

    help = f"add the {EVENT} hook that runs `pattern-tracker hook` to Claude Code's settings.json"
    description = (
        f"{help}. By default your own ~/.claude/settings.json (honours HOME); --local for one project's "
        f".claude/settings.local.json; --project for the project's shared .claude/settings.json, only when asked "
        f"explicitly. {SHARED_WHY} With --project, give a command every teammate can run, e.g. "
        "--command 'pattern-tracker hook' (found on PATH)."
    )
    p = sub.add_parser("install-hook", parents=[common], help=help, description=description)
    target_flags(p, uninstall=False)
    p.add_argument("--command", metavar="CMD", default=None,
                   help="the hook command (default: this pattern-tracker's absolute path + ' hook')")
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, write nothing")
    p.set_defaults(func=cmd_install_hook)

    help = "remove our hook from Claude Code's settings.json (nothing else)"
    description = (
        f"{help}. Without a flag: from every file install-hook may have written for the current directory "
        "(~/.claude/settings.json, .claude/settings.local.json, .claude/settings.json); with a flag: from that "
        "file only."
    )
    p = sub.add_parser("uninstall-hook", parents=[common], help=help, description=description)
    target_flags(p, uninstall=True)
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, write nothing")
    p.set_defaults(func=cmd_uninstall_hook)


# ---------------------------------------------------------------------------------------


def user_settings() -> Path:
    """``~/.claude/settings.json`` (``Path.home()`` honours HOME)."""
    return Path.home() / ".claude" / "settings.json"


def _project_dir(flag: str, value: str) -> Path:
    project = Path(value).expanduser()
    if not project.is_dir():
        raise CliError(f"{flag} {value}: no such directory", EXIT_USAGE)
    return project.absolute()


def settings_path(args: argparse.Namespace) -> Path:
    """The one file a flag names; no flag means ``--user``."""
    if args.local is not None:
        return _project_dir("--local", args.local) / ".claude" / "settings.local.json"
    if args.project is not None:
        return _project_dir("--project", args.project) / ".claude" / "settings.json"
    return user_settings()


def every_settings_path(project: Path | None = None) -> list[Path]:
    """Every file install-hook may write for ``project`` (default: the cwd): user, local, shared.

    Deduplicated by real path (in HOME, the shared project file *is* the user file)."""
    project = Path.cwd() if project is None else project
    out: list[Path] = []
    seen: set[str] = set()
    for path in (user_settings(), project / ".claude" / "settings.local.json", project / ".claude" / "settings.json"):
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(path)
    return out


def _explicit(args: argparse.Namespace) -> bool:
    return bool(args.user) or args.local is not None or args.project is not None


def _is_script_name(name: str) -> bool:
    return name == SCRIPT or name.lower() == SCRIPT + ".exe"


def default_command(argv0: str | None = None, python: str | None = None) -> str:
    """``PYTHON -I SCRIPT hook``: the running console script, run by its own interpreter in isolated mode.

    Claude Code runs the hook in the user's environment, where an exported ``PYTHONPATH`` (or a
    ``pattern_tracker/`` on it) would otherwise be imported before ours: ``-I`` ignores PYTHONPATH,
    the current directory and the user site. A script that cannot be found as a file stays bare.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    exe: str | None = None
    if argv0 and _is_script_name(Path(argv0).name):
        p = Path(argv0) if os.sep in argv0 else Path(shutil.which(argv0) or argv0)
        resolved = p.resolve()
        # Keep a symlink whose target has another name (the command must stay recognisable).
        exe = str(resolved if _is_script_name(resolved.name) else p.absolute())
    if exe is None:
        exe = shutil.which(SCRIPT) or SCRIPT
    if python and os.path.isabs(exe) and os.path.isfile(exe):
        return f"{shlex.quote(python)} -I {shlex.quote(exe)} hook"
    return f"{shlex.quote(exe)} hook"


def _timeout(args: argparse.Namespace) -> int:
    from pattern_tracker.settings.config import load_config

    return int(load_config(getattr(args, "config", None)).config.hook.timeout)


def _fail(exc: SettingsError) -> CliError:
    return CliError(str(exc), EXIT_FAILURE)


def _also_in(path: Path, args: argparse.Namespace) -> list[Path]:
    """Other files of this user/project that already hold our hook (Claude Code would run it twice)."""
    project = Path(args.local or args.project or ".").absolute()
    out = []
    for other in every_settings_path(project):
        if os.path.realpath(other) == os.path.realpath(path):
            continue
        try:
            if find_our_hooks(read_settings(other)[0]):
                out.append(other)
        except SettingsError:
            continue  # not ours to judge here; uninstall-hook reports it
    return out


def _notes(path: Path, args: argparse.Namespace, command: str) -> None:
    for other in _also_in(path, args):
        flag = {"settings.local.json": "--local", "settings.json": "--project"}[other.name]
        flag = "--user" if os.path.realpath(other) == os.path.realpath(user_settings()) else flag
        print(f"note: {other} holds the hook too, so every edit would be recorded twice; "
              f"`pattern-tracker uninstall-hook {flag}` removes it there", file=sys.stderr)
    if args.project is not None and args.command is None:
        print(f"note: {SHARED_WHY} If this file is shared, use --command 'pattern-tracker hook' "
              "or install-hook --user / --local instead.", file=sys.stderr)


def cmd_install_hook(args: argparse.Namespace) -> int:
    if args.command is not None:
        command = args.command.strip()
        if not is_our_command(command):
            raise CliError(
                f"--command {args.command!r} is not recognisable as ours: its first word must end with "
                "'pattern-tracker' and its second word must be 'hook' (e.g. '/opt/venv/bin/pattern-tracker hook'); "
                "otherwise install-hook and uninstall-hook could not find it again",
                EXIT_USAGE,
            )
    else:
        command = default_command()
    timeout = _timeout(args)
    path = settings_path(args)
    try:
        settings, previous = read_settings(path)
        new, action = install_hook(settings, command, timeout)
    except SettingsError as exc:
        raise _fail(exc) from None
    if args.dry_run:
        sys.stdout.write(render_settings(new))
        verb = {"installed": "would install", "updated": "would update", "unchanged": "would leave unchanged"}[action]
        print(f"dry run: {verb} {WHAT} in {path} (timeout {timeout}s); nothing written", file=sys.stderr)
        return EXIT_OK
    if action == "unchanged":
        print(f"{WHAT} is already installed in {path} (timeout {timeout}s): {command}; nothing changed")
        _notes(path, args, command)
        return EXIT_OK
    try:
        backup = write_settings(path, new, previous)
    except SettingsError as exc:
        raise _fail(exc) from None
    note = f"; previous content in {backup.name}" if backup else ""
    print(f"{action} {WHAT} in {path} (timeout {timeout}s): {command}{note}")
    _notes(path, args, command)
    return EXIT_OK


def _uninstall_one(path: Path, dry_run: bool, quiet_if_absent: bool) -> bool:
    """Remove our entries from ``path``; True when there were any (SettingsError when unusable)."""
    settings, previous = read_settings(path)
    new, removed = uninstall_hook(settings)
    if dry_run:
        if removed or not quiet_if_absent:
            sys.stdout.write(render_settings(new))
        what = f"would remove {removed} pattern-tracker hook entr{'y' if removed == 1 else 'ies'}" if removed else "nothing to remove"
        if removed or not quiet_if_absent:
            print(f"dry run: {what} in {path}; nothing written", file=sys.stderr)
        return bool(removed)
    if not removed:
        if not quiet_if_absent:
            state = "does not exist" if previous is None else "has no pattern-tracker hook"
            print(f"{path} {state}; nothing to uninstall")
        return False
    backup = write_settings(path, new, previous)
    extra = f" ({removed} entries)" if removed > 1 else ""
    note = f"; previous content in {backup.name}" if backup else ""
    print(f"removed {WHAT}{extra} from {path}{note}")
    return True


def cmd_uninstall_hook(args: argparse.Namespace) -> int:
    if _explicit(args):
        try:
            _uninstall_one(settings_path(args), args.dry_run, quiet_if_absent=False)
        except SettingsError as exc:
            raise _fail(exc) from None
        return EXIT_OK
    # No flag: wherever install-hook may have put it for this directory; one bad file does not
    # keep ours in the others.
    paths = every_settings_path()
    found, failed = False, False
    for path in paths:
        try:
            found = _uninstall_one(path, args.dry_run, quiet_if_absent=True) or found
        except SettingsError as exc:
            print(f"pattern-tracker: {exc}", file=sys.stderr)
            failed = True
    if not found and not failed:
        where = ", ".join(str(p) for p in paths)
        print(f"no pattern-tracker hook in {where}; nothing to uninstall", file=sys.stderr if args.dry_run else sys.stdout)
    return EXIT_FAILURE if failed else EXIT_OK
