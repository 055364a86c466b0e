"""install-hook / uninstall-hook: the pure settings merge, the file layer and the real console script."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from pattern_tracker.usecases.claude_settings import (
    MATCHER,
    SettingsError,
    find_our_hooks,
    install_hook,
    is_our_command,
    read_settings,
    render_settings,
    uninstall_hook,
    write_settings,
)
from pattern_tracker.cli.install_hook import default_command
from tests.clitools import BIN, cli_env, run_cli

CMD = "/opt/venv/bin/pattern-tracker hook"
OTHER = {"type": "command", "command": "ruff format --quiet", "timeout": 30}
REPO = Path(__file__).resolve().parent.parent
# What install-hook writes: the console script run by its own interpreter (its shebang), isolated
# from PYTHONPATH and the cwd.
HOOK_CMD = f"{BIN.read_text().splitlines()[0].removeprefix('#!')} -I {BIN} hook"


def ours(cmd: str = CMD, timeout: int = 10) -> dict:
    return {"type": "command", "command": cmd, "timeout": timeout}


def dumps(obj) -> str:
    """Order-sensitive comparison (== on dicts ignores key order)."""
    return json.dumps(obj, indent=2)


# ---------------------------------------------------------------------------------------
# Recognising our command


@pytest.mark.parametrize(
    "command, expected",
    [
        ("pattern-tracker hook", True),
        ("/home/me/.venv/bin/pattern-tracker hook", True),
        ("'/path with spaces/pattern-tracker' hook --config x.yaml", True),
        ("pattern_tracker hook", True),
        ("C:/venv/Scripts/pattern-tracker.exe hook", True),
        ("/home/me/.venv/bin/python -I /home/me/.venv/bin/pattern-tracker hook", True),
        ("'/opt/my env/bin/python3.12' -I -X utf8 '/opt/my env/bin/pattern-tracker' hook --config x.yaml", True),
        ("python -I pattern-tracker run", False),
        ("python -I other-tool hook", False),
        ("python -m pattern-tracker hook", False),
        ("pattern-tracker run", False),
        ("pattern-tracker", False),
        ("echo pattern-tracker hook", False),
        ("ruff format", False),
        ("'unbalanced pattern-tracker hook", False),
        ("", False),
    ],
)
def test_is_our_command(command, expected):
    assert is_our_command(command) is expected


# ---------------------------------------------------------------------------------------
# Pure merge / remove


def test_install_into_empty_settings():
    new, action = install_hook({}, CMD, 10)
    assert action == "installed"
    assert new == {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": [ours()]}]}}
    assert uninstall_hook(new) == ({}, 1)


def test_install_does_not_mutate_its_input():
    original = {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": [dict(OTHER)]}]}}
    snapshot = copy.deepcopy(original)
    new, _ = install_hook(original, CMD, 10)
    uninstall_hook(new)
    assert original == snapshot


def test_keeps_unrelated_group_with_another_matcher_and_other_events_and_keys():
    original = {
        "model": "opus",
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard.sh"}]}],
            "PostToolUse": [{"matcher": "Write", "hooks": [dict(OTHER)]}],
            "Stop": [{"hooks": [{"type": "command", "command": "notify"}]}],
        },
        "permissions": {"allow": ["Bash(ls)"]},
    }
    new, action = install_hook(original, CMD, 10)
    assert action == "installed"
    assert list(new) == ["model", "hooks", "permissions"]
    assert list(new["hooks"]) == ["PreToolUse", "PostToolUse", "Stop"]
    assert new["hooks"]["PreToolUse"] == original["hooks"]["PreToolUse"]
    assert new["hooks"]["Stop"] == original["hooks"]["Stop"]
    assert new["hooks"]["PostToolUse"] == [
        {"matcher": "Write", "hooks": [OTHER]},
        {"matcher": MATCHER, "hooks": [ours()]},
    ]
    restored, removed = uninstall_hook(new)
    assert removed == 1 and dumps(restored) == dumps(original)


def test_pretooluse_only_gets_posttooluse_appended():
    original = {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [dict(OTHER)]}]}}
    new, _ = install_hook(original, CMD, 10)
    assert list(new["hooks"]) == ["PreToolUse", "PostToolUse"]
    assert dumps(uninstall_hook(new)[0]) == dumps(original)


def test_group_with_our_matcher_and_someone_elses_hook_is_shared():
    original = {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": [dict(OTHER)]}]}}
    new, _ = install_hook(original, CMD, 10)
    assert new["hooks"]["PostToolUse"] == [{"matcher": MATCHER, "hooks": [OTHER, ours()]}]
    restored, removed = uninstall_hook(new)
    assert removed == 1
    assert restored == original  # only ours left the group; the group stays


def test_empty_group_with_our_matcher_is_left_alone():
    original = {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": []}]}}
    new, _ = install_hook(original, CMD, 10)
    assert new["hooks"]["PostToolUse"] == [{"matcher": MATCHER, "hooks": []}, {"matcher": MATCHER, "hooks": [ours()]}]
    assert uninstall_hook(new)[0] == original


def test_idempotent():
    once, a1 = install_hook({"hooks": {"PostToolUse": [{"matcher": "Write", "hooks": [dict(OTHER)]}]}}, CMD, 10)
    twice, a2 = install_hook(once, CMD, 10)
    assert (a1, a2) == ("installed", "unchanged")
    assert dumps(twice) == dumps(once)
    assert len(find_our_hooks(twice)) == 1


def test_different_command_or_timeout_replaces_in_place():
    original = {"hooks": {"PostToolUse": [
        {"matcher": MATCHER, "hooks": [dict(OTHER), ours("/old/pattern-tracker hook", 5), {"type": "command", "command": "z"}]},
        {"matcher": "Bash", "hooks": [dict(OTHER)]},
    ]}}
    new, action = install_hook(original, CMD, 20)
    assert action == "updated"
    assert new["hooks"]["PostToolUse"][0]["hooks"] == [OTHER, ours(CMD, 20), {"type": "command", "command": "z"}]
    assert new["hooks"]["PostToolUse"][1] == original["hooks"]["PostToolUse"][1]
    assert install_hook(new, CMD, 20)[1] == "unchanged"


def test_duplicates_and_ours_under_another_matcher_collapse_to_one():
    original = {"hooks": {"PostToolUse": [
        {"matcher": "Write", "hooks": [ours("pattern-tracker hook")]},
        {"matcher": "Edit", "hooks": [dict(OTHER), ours("x/pattern-tracker hook")]},
    ]}}
    new, action = install_hook(original, CMD, 10)
    assert action == "updated"
    assert new["hooks"]["PostToolUse"] == [
        {"matcher": "Edit", "hooks": [OTHER]},
        {"matcher": MATCHER, "hooks": [ours()]},
    ]
    both = {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": [ours(), ours("pattern_tracker hook")]}]}}
    new, action = install_hook(both, CMD, 10)
    assert action == "updated" and find_our_hooks(new) == [ours()]


def test_uninstall_without_ours_changes_nothing():
    original = {"hooks": {"PostToolUse": [{"matcher": MATCHER, "hooks": [dict(OTHER)]}]}, "x": 1}
    assert uninstall_hook(original) == (original, 0)
    assert uninstall_hook({}) == ({}, 0)


def test_pre_existing_empty_containers_come_back_absent():
    """The documented limitation: installed documents are identical, so uninstall cannot tell."""
    for original in ({"hooks": {}}, {"hooks": {"PostToolUse": []}}):
        new, _ = install_hook(original, CMD, 10)
        assert new == install_hook({}, CMD, 10)[0]
        assert uninstall_hook(new)[0] == {}
    # An empty PostToolUse beside other events goes too; the other events stay.
    new, _ = install_hook({"hooks": {"PostToolUse": [], "Stop": []}}, CMD, 10)
    assert uninstall_hook(new)[0] == {"hooks": {"Stop": []}}


@pytest.mark.parametrize(
    "bad",
    [[], "x", {"hooks": []}, {"hooks": None}, {"hooks": {"PostToolUse": {}}}, {"hooks": {"PostToolUse": "x"}}],
)
def test_wrong_types_are_refused(bad):
    with pytest.raises(SettingsError):
        install_hook(bad, CMD, 10)
    with pytest.raises(SettingsError):
        uninstall_hook(bad)


def test_groups_of_unknown_shape_are_left_alone():
    original = {"hooks": {"PostToolUse": ["junk", {"matcher": MATCHER, "hooks": "nope"}, {"matcher": MATCHER}]}}
    new, _ = install_hook(original, CMD, 10)
    assert new["hooks"]["PostToolUse"][:3] == original["hooks"]["PostToolUse"]
    assert dumps(uninstall_hook(new)[0]) == dumps(original)


def test_manual_snippet_is_what_install_writes():
    snippet = json.loads((REPO / "config" / "claude-code-settings.json").read_text())
    assert snippet == install_hook({}, "pattern-tracker hook", 10)[0]
    assert is_our_command(find_our_hooks(snippet)[0]["command"])


# Random settings without any entry of ours: arbitrary JSON under arbitrary keys, and a `hooks`
# object with arbitrary events, matcher groups (ours among the matchers) and foreign hooks.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_foreign_cmd = st.sampled_from(["ruff format", "echo pattern-tracker hook", "pattern-tracker run", "'bad", "npx prettier -w"])
_hook = st.fixed_dictionaries(
    {"type": st.sampled_from(["command", "prompt"]), "command": _foreign_cmd},
    optional={"timeout": st.integers(1, 600)},
) | _json
_group = st.fixed_dictionaries(
    {"matcher": st.sampled_from([MATCHER, "Write", "Bash", ""]), "hooks": st.lists(_hook, max_size=3)}
) | _json
_events = st.dictionaries(
    st.sampled_from(["PreToolUse", "PostToolUse", "Stop", "Notification", "SessionStart"]),
    st.lists(_group, min_size=1, max_size=3),
    min_size=1,
)
_settings = st.dictionaries(st.text(max_size=6).filter(lambda k: k != "hooks"), _json, max_size=4).flatmap(
    lambda base: st.one_of(
        st.just(base),
        _events.map(lambda ev: {**base, "hooks": ev}),
        _events.map(lambda ev: {"hooks": ev, **base}),
    )
)
_our_cmd = st.sampled_from([CMD, "pattern-tracker hook", "'/a b/pattern-tracker' hook --config c.yaml"])


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(original=_settings, command=_our_cmd, timeout=st.integers(1, 600))
def test_property_install_then_uninstall_restores_exactly(original, command, timeout):
    installed, action = install_hook(original, command, timeout)
    assert action == "installed"
    assert find_our_hooks(installed) == [ours(command, timeout)]
    again, action = install_hook(installed, command, timeout)
    assert action == "unchanged" and dumps(again) == dumps(installed)
    restored, removed = uninstall_hook(installed)
    assert removed == 1
    assert dumps(restored) == dumps(original)  # equal, key order included
    assert render_settings(restored) == render_settings(original)


# ---------------------------------------------------------------------------------------
# File layer


def test_read_missing_and_malformed(tmp_path):
    path = tmp_path / "settings.json"
    assert read_settings(path) == ({}, None)
    path.write_text('{\n  "a": 1,\n}\n')
    with pytest.raises(SettingsError, match=r"settings.json is not valid JSON: .* line 3 column 1"):
        read_settings(path)
    path.write_text("  \n")
    assert read_settings(path) == ({}, b"  \n")


def test_write_keeps_mode_backs_up_and_follows_symlinks(tmp_path):
    real = tmp_path / "dotfiles" / "settings.json"
    real.parent.mkdir()
    real.write_text('{"a": 1}\n')
    os.chmod(real, 0o600)
    link = tmp_path / "proj" / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    settings, previous = read_settings(link)
    backup = write_settings(link, install_hook(settings, CMD, 10)[0], previous)
    assert link.is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert backup == real.with_name("settings.json.bak") and backup.read_text() == '{"a": 1}\n'
    assert json.loads(real.read_text())["hooks"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["settings.json", "settings.json.bak"]  # no temp left


def test_write_failure_is_one_settings_error(tmp_path):
    (tmp_path / "proj").write_text("a file where the directory should be")
    with pytest.raises(SettingsError, match=r"^cannot write .*settings.json: .*; not changed$"):
        write_settings(tmp_path / "proj" / ".claude" / "settings.json", {}, None)


def test_default_command(tmp_path):
    script = tmp_path / "my bin" / "pattern-tracker"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    assert default_command(str(script), python="/opt/py env/bin/python") == f"'/opt/py env/bin/python' -I '{script}' hook"
    assert default_command(str(script), python="") == f"'{script}' hook"
    assert is_our_command(default_command(str(script)))
    assert default_command(str(tmp_path / "missing" / "pattern-tracker")).endswith("pattern-tracker hook")
    assert is_our_command(default_command("/usr/lib/python3/pipeline/main.py"))


# ---------------------------------------------------------------------------------------
# Through the real console script


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return cli_env(tmp_path / "data", HOME=str(home))


def _only_ours(path: Path) -> list[dict]:
    return find_our_hooks(json.loads(path.read_text()))


def test_cli_creates_the_file(tmp_path, env):
    project = tmp_path / "proj"
    project.mkdir()
    r = run_cli("install-hook", "--project", str(project), env=env)
    assert r.returncode == 0, r.stderr
    path = project / ".claude" / "settings.json"
    assert f"installed the pattern-tracker PostToolUse hook in {path} (timeout 10s)" in r.stdout
    assert _only_ours(path) == [ours(HOOK_CMD, 10)]
    assert path.read_text().endswith("}\n")
    assert not (project / ".claude" / "settings.local.json").exists()
    assert not (project / ".claude" / "settings.json.bak").exists()


def test_cli_keeps_unrelated_hooks_is_idempotent_and_uninstall_restores_bytes(tmp_path, env):
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    path = project / ".claude" / "settings.json"
    original = {
        "permissions": {"allow": ["Bash(npm test)"]},
        "hooks": {
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "guard"}]}],
            "PostToolUse": [{"matcher": "Write|Edit", "hooks": [OTHER]}],
        },
        "env": {"GREETING": "héllo"},
    }
    original_text = json.dumps(original, indent=2, ensure_ascii=False) + "\n"
    path.write_text(original_text, encoding="utf-8")
    os.chmod(path, 0o640)
    local = project / ".claude" / "settings.local.json"
    local.write_text("{}\n")

    for _ in range(2):
        r = run_cli("install-hook", "--project", str(project), "--command", "pattern-tracker hook", env=env)
        assert r.returncode == 0, r.stderr
    assert "already installed" in r.stdout
    installed = json.loads(path.read_text())
    assert _only_ours(path) == [ours("pattern-tracker hook")]
    assert installed["hooks"]["PostToolUse"][0] == {"matcher": "Write|Edit", "hooks": [OTHER]}
    assert installed["hooks"]["PreToolUse"] == original["hooks"]["PreToolUse"]
    assert (project / ".claude" / "settings.json.bak").read_text(encoding="utf-8") == original_text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    r = run_cli("install-hook", "--project", str(project), env=env)  # another command: replaced in place
    assert r.returncode == 0 and r.stdout.startswith("updated"), r.stdout + r.stderr
    assert _only_ours(path) == [ours(HOOK_CMD)]

    r = run_cli("uninstall-hook", "--project", str(project), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"removed the pattern-tracker PostToolUse hook from {path}")
    assert path.read_bytes() == original_text.encode("utf-8")
    assert local.read_text() == "{}\n"

    r = run_cli("uninstall-hook", "--project", str(project), env=env)
    assert r.returncode == 0 and "has no pattern-tracker hook; nothing to uninstall" in r.stdout
    assert path.read_bytes() == original_text.encode("utf-8")


SHARED = {"permissions": {"allow": ["Bash(npm test)"]}}  # what a team commits
SHARED_TEXT = json.dumps(SHARED, indent=2) + "\n"


def _project_with_shared_settings(tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    (project / ".claude").mkdir(parents=True)
    (project / ".claude" / "settings.json").write_text(SHARED_TEXT)
    return project


def test_cli_default_is_the_users_own_settings_not_the_shared_project_file(tmp_path, env):
    """No flag, run from inside a project: ~/.claude/settings.json (HOME), the project's files untouched."""
    project = _project_with_shared_settings(tmp_path)
    user = Path(env["HOME"]) / ".claude" / "settings.json"
    r = run_cli("install-hook", env=env, cwd=project)
    assert r.returncode == 0, r.stderr
    assert f"installed the pattern-tracker PostToolUse hook in {user} (timeout 10s)" in r.stdout
    assert _only_ours(user) == [ours(HOOK_CMD, 10)]
    assert (project / ".claude" / "settings.json").read_text() == SHARED_TEXT
    assert sorted(p.name for p in (project / ".claude").iterdir()) == ["settings.json"]
    assert r.stderr == ""  # nothing to warn about
    # Uninstall without a flag finds it there.
    r = run_cli("uninstall-hook", env=env, cwd=project)
    assert r.returncode == 0 and r.stdout.startswith(f"removed the pattern-tracker PostToolUse hook from {user}"), r.stdout
    assert json.loads(user.read_text()) == {}
    assert (project / ".claude" / "settings.json").read_text() == SHARED_TEXT
    r = run_cli("uninstall-hook", env=env, cwd=project)
    assert r.returncode == 0 and "nothing to uninstall" in r.stdout and str(user) in r.stdout, r.stdout


def test_cli_local_flag_writes_settings_local_json(tmp_path, env):
    project = _project_with_shared_settings(tmp_path)
    local = project / ".claude" / "settings.local.json"
    r = run_cli("install-hook", "--local", env=env, cwd=project)  # DIR defaults to the cwd
    assert r.returncode == 0 and f"installed the pattern-tracker PostToolUse hook in {local}" in r.stdout, r.stdout + r.stderr
    assert _only_ours(local) == [ours(HOOK_CMD, 10)]
    assert (project / ".claude" / "settings.json").read_text() == SHARED_TEXT
    assert not (Path(env["HOME"]) / ".claude").exists()
    r = run_cli("install-hook", "--local", str(project), env=env)  # the same file, named from elsewhere
    assert r.returncode == 0 and "already installed" in r.stdout and str(local) in r.stdout
    r = run_cli("uninstall-hook", "--local", str(project), env=env)
    assert r.returncode == 0 and r.stdout.startswith(f"removed the pattern-tracker PostToolUse hook from {local}")
    assert json.loads(local.read_text()) == {}
    r = run_cli("install-hook", "--local", str(tmp_path / "missing"), env=env)
    assert r.returncode == 2 and "--local" in r.stderr and "no such directory" in r.stderr


def test_cli_shared_project_file_only_when_asked_and_help_says_why(tmp_path, env):
    help_text = " ".join(run_cli("install-hook", "--help", env=env).stdout.split())
    assert "commit .claude/settings.json" in help_text and "absolute path" in help_text
    assert "fails on every edit for everyone else" in help_text
    project = _project_with_shared_settings(tmp_path)
    shared = project / ".claude" / "settings.json"
    r = run_cli("install-hook", "--project", env=env, cwd=project)
    assert r.returncode == 0 and f"installed the pattern-tracker PostToolUse hook in {shared}" in r.stdout, r.stderr
    assert _only_ours(shared) == [ours(HOOK_CMD, 10)]
    assert "fails on every edit for everyone else" in r.stderr and "--command 'pattern-tracker hook'" in r.stderr
    # With a PATH-relative command (what a team can share), no warning.
    r = run_cli("install-hook", "--project", "--command", "pattern-tracker hook", env=env, cwd=project)
    assert r.returncode == 0 and r.stdout.startswith("updated") and r.stderr == "", r.stdout + r.stderr
    assert not (Path(env["HOME"]) / ".claude").exists()
    # Uninstall without a flag, from the project: found and removed, the team's content back.
    r = run_cli("uninstall-hook", env=env, cwd=project)
    assert r.returncode == 0 and r.stdout.startswith(f"removed the pattern-tracker PostToolUse hook from {shared}"), r.stdout
    assert shared.read_text() == SHARED_TEXT


def test_cli_uninstall_without_flag_removes_every_copy_and_survives_a_bad_file(tmp_path, env):
    project = _project_with_shared_settings(tmp_path)
    user = Path(env["HOME"]) / ".claude" / "settings.json"
    local = project / ".claude" / "settings.local.json"
    shared = project / ".claude" / "settings.json"
    assert run_cli("install-hook", env=env, cwd=project).returncode == 0
    r = run_cli("install-hook", "--local", env=env, cwd=project)
    assert r.returncode == 0 and f"note: {user} holds the hook too" in r.stderr and "uninstall-hook --user" in r.stderr, r.stderr
    assert run_cli("install-hook", "--project", "--command", "pattern-tracker hook", env=env, cwd=project).returncode == 0
    r = run_cli("uninstall-hook", "--dry-run", env=env, cwd=project)
    assert r.returncode == 0 and r.stderr.count("would remove 1 pattern-tracker hook entry") == 3, r.stderr
    assert all(len(_only_ours(p)) == 1 for p in (user, local, shared))
    r = run_cli("uninstall-hook", env=env, cwd=project)
    assert r.returncode == 0, r.stderr
    assert [line.split(" from ")[1].split(";")[0] for line in r.stdout.splitlines()] == [str(user), str(local), str(shared)]
    assert _only_ours(user) == _only_ours(local) == _only_ours(shared) == []
    assert shared.read_text() == SHARED_TEXT
    # A malformed file is reported (exit 1) and left as it is; ours still leaves the others.
    assert run_cli("install-hook", env=env, cwd=project).returncode == 0
    local.write_text("{not json")
    r = run_cli("uninstall-hook", env=env, cwd=project)
    assert r.returncode == 1 and str(local) in r.stderr and "not valid JSON" in r.stderr, r.stderr
    assert _only_ours(user) == [] and local.read_text() == "{not json"


def test_cli_uninstall_from_home_sees_the_user_file_once(tmp_path, env):
    """Run from HOME, the shared project file *is* the user file: one removal, not two."""
    home = Path(env["HOME"])
    assert run_cli("install-hook", env=env, cwd=home).returncode == 0
    r = run_cli("uninstall-hook", env=env, cwd=home)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1 and r.stdout.startswith("removed"), r.stdout


def test_cli_user_scope_uses_home(tmp_path, env):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = run_cli("install-hook", "--user", env=env)
    assert r.returncode == 0, r.stderr
    path = Path(env["HOME"]) / ".claude" / "settings.json"
    assert len(_only_ours(path)) == 1
    r = run_cli("uninstall-hook", "--user", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text()) == {}


def test_cli_malformed_json_is_left_untouched(tmp_path, env):
    path = tmp_path / "proj" / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"hooks": {"PostToolUse": [}\n')
    for command in ("install-hook", "uninstall-hook"):
        r = run_cli(command, "--project", str(tmp_path / "proj"), env=env)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "line 1 column 28" in lines[0], r.stderr
    assert path.read_bytes() == b'{"hooks": {"PostToolUse": [}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_cli_wrong_types_and_bad_command(tmp_path, env):
    path = tmp_path / "proj" / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"hooks": {"PostToolUse": {"matcher": "Write"}}}')
    r = run_cli("install-hook", "--project", str(tmp_path / "proj"), env=env)
    assert r.returncode == 1 and '"hooks.PostToolUse" is a JSON object, expected an array' in r.stderr
    assert path.read_text() == '{"hooks": {"PostToolUse": {"matcher": "Write"}}}'
    r = run_cli("install-hook", "--project", str(tmp_path / "proj"), "--command", "uv run tracker", env=env)
    assert r.returncode == 2 and "not recognisable as ours" in r.stderr
    r = run_cli("install-hook", "--project", str(tmp_path / "missing"), env=env)
    assert r.returncode == 2 and "no such directory" in r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_cli_unwritable_directory(tmp_path, env):
    project = tmp_path / "proj"
    project.mkdir()
    os.chmod(project, 0o500)
    try:
        r = run_cli("install-hook", "--project", str(project), env=env)
    finally:
        os.chmod(project, 0o700)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "cannot write" in r.stderr, r.stderr
    assert not (project / ".claude").exists()


def test_cli_claude_path_is_a_file(tmp_path, env):
    """Works as root too: `.claude` exists as a regular file, so nothing can be written."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".claude").write_text("not a directory")
    r = run_cli("install-hook", "--project", str(project), env=env)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Not a directory" in r.stderr, r.stderr
    assert (project / ".claude").read_text() == "not a directory"


def test_cli_timeout_from_config_and_dry_run_writes_nothing(tmp_path, env):
    project = tmp_path / "proj"
    project.mkdir()
    cfg = tmp_path / "pt.yaml"
    cfg.write_text("hook:\n  timeout: 42\n")
    r = run_cli("install-hook", "--project", str(project), "--dry-run", "--config", str(cfg), env=env)
    assert r.returncode == 0, r.stderr
    assert find_our_hooks(json.loads(r.stdout)) == [ours(HOOK_CMD, 42)]
    assert "dry run" in r.stderr and "nothing written" in r.stderr
    assert list(project.iterdir()) == []
    r = run_cli("install-hook", "--project", str(project), env={**env, "PATTERN_TRACKER__HOOK__TIMEOUT": "7"})
    assert r.returncode == 0 and "(timeout 7s)" in r.stdout, r.stdout + r.stderr
    r = run_cli("uninstall-hook", "--project", str(project), "--dry-run", env=env)
    assert r.returncode == 0 and json.loads(r.stdout) == {}
    assert len(_only_ours(project / ".claude" / "settings.json")) == 1
