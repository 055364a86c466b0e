"""``pattern-tracker install-hook`` / ``uninstall-hook``: our PostToolUse entry in Claude Code settings.

    install-hook   [--project [DIR] | --user] [--command CMD] [--dry-run]
    uninstall-hook [--project [DIR] | --user] [--dry-run]

The target is ``DIR/.claude/settings.json`` (default DIR: the current directory) or, with
``--user``, ``~/.claude/settings.json``. ``.claude/settings.local.json`` is never touched. The
settings logic lives in :mod:`pattern_tracker.claude_settings`; this module resolves paths and the
command, loads ``hook.timeout`` from the configuration and reports one line. Exit codes: 0 ok
(also when there is nothing to uninstall), 1 the file cannot be read, parsed or written (it is
left untouched), 2 usage.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from pattern_tracker.claude_settings import (
    EVENT,
    SettingsError,
    install_hook,
    is_our_command,
    read_settings,
    render_settings,
    uninstall_hook,
    write_settings,
)
from pattern_tracker.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CliError

SCRIPT = "pattern-tracker"
WHAT = f"the pattern-tracker {EVENT} hook"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``install-hook`` and ``uninstall-hook`` to the ``pattern-tracker`` subparsers."""

    def target_flags(p: argparse.ArgumentParser) -> None:
        where = p.add_mutually_exclusive_group()
        where.add_argument(
            "--project", metavar="DIR", nargs="?", const=".", default=None,
            help="DIR/.claude/settings.json (the default, with DIR = the current directory)",
        )
        where.add_argument("--user", action="store_true", help="~/.claude/settings.json instead")

    help = f"add the {EVENT} hook that runs `pattern-tracker hook` to Claude Code's settings.json"
    p = sub.add_parser("install-hook", parents=[common], help=help, description=help)
    target_flags(p)
    p.add_argument("--command", metavar="CMD", default=None,
                   help="the hook command (default: this pattern-tracker's absolute path + ' hook')")
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, write nothing")
    p.set_defaults(func=cmd_install_hook)

    help = "remove our hook from Claude Code's settings.json (nothing else)"
    p = sub.add_parser("uninstall-hook", parents=[common], help=help, description=help)
    target_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, write nothing")
    p.set_defaults(func=cmd_uninstall_hook)


# ---------------------------------------------------------------------------------------


def settings_path(args: argparse.Namespace) -> Path:
    if args.user:
        return Path.home() / ".claude" / "settings.json"
    project = Path(args.project or ".").expanduser()
    if not project.is_dir():
        raise CliError(f"--project {args.project}: no such directory", EXIT_USAGE)
    return project.absolute() / ".claude" / "settings.json"


def _is_script_name(name: str) -> bool:
    return name == SCRIPT or name.lower() == SCRIPT + ".exe"


def default_command(argv0: str | None = None) -> str:
    """The running console script's absolute path + `` hook`` (quoted when needed)."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    exe: str | None = None
    if argv0 and _is_script_name(Path(argv0).name):
        p = Path(argv0) if os.sep in argv0 else Path(shutil.which(argv0) or argv0)
        resolved = p.resolve()
        # Keep a symlink whose target has another name (the command must stay recognisable).
        exe = str(resolved if _is_script_name(resolved.name) else p.absolute())
    if exe is None:
        exe = shutil.which(SCRIPT) or SCRIPT
    return f"{shlex.quote(exe)} hook"


def _timeout(args: argparse.Namespace) -> int:
    from pattern_tracker.config import load_config

    return int(load_config(getattr(args, "config", None)).config.hook.timeout)


def _fail(exc: SettingsError) -> CliError:
    return CliError(str(exc), EXIT_FAILURE)


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
        return EXIT_OK
    try:
        backup = write_settings(path, new, previous)
    except SettingsError as exc:
        raise _fail(exc) from None
    note = f"; previous content in {backup.name}" if backup else ""
    print(f"{action} {WHAT} in {path} (timeout {timeout}s): {command}{note}")
    return EXIT_OK


def cmd_uninstall_hook(args: argparse.Namespace) -> int:
    path = settings_path(args)
    try:
        settings, previous = read_settings(path)
        new, removed = uninstall_hook(settings)
    except SettingsError as exc:
        raise _fail(exc) from None
    if args.dry_run:
        sys.stdout.write(render_settings(new))
        what = f"would remove {removed} pattern-tracker hook entr{'y' if removed == 1 else 'ies'}" if removed else "nothing to remove"
        print(f"dry run: {what} in {path}; nothing written", file=sys.stderr)
        return EXIT_OK
    if not removed:
        state = "does not exist" if previous is None else "has no pattern-tracker hook"
        print(f"{path} {state}; nothing to uninstall")
        return EXIT_OK
    try:
        backup = write_settings(path, new, previous)
    except SettingsError as exc:
        raise _fail(exc) from None
    extra = f" ({removed} entries)" if removed > 1 else ""
    note = f"; previous content in {backup.name}" if backup else ""
    print(f"removed {WHAT}{extra} from {path}{note}")
    return EXIT_OK
