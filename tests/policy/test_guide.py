"""The policy guide's worked example runs as shown: each `$ enforcer ...` line of its console
blocks is run from a copy of the repository's layout, and every output line the guide shows
(apart from `...`, which stands for lines left out) is in the command's output."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from enforcer.core.settings import Settings

from ..conftest import ROOT

GUIDE = ROOT / "deploy" / "policies" / "README.md"


def console_blocks() -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) for every command in the guide."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", GUIDE.read_text(), re.S):
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *shown = part.rstrip("\n").split("\n")
            found.append((command, shown))
    return found


def test_the_guide_shows_its_commands() -> None:
    commands = [c.split()[:3] for c, _ in console_blocks()]
    assert ["enforcer", "simulate", "--minutes"] in commands
    assert commands.count(["enforcer", "policy", "diff"]) == 2
    assert commands.count(["enforcer", "policy", "check"]) == 2


def test_every_command_in_the_policy_guide_runs_as_shown(
    isolated: Settings, tmp_path: Path
) -> None:
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    env = {"PATH": "/usr/bin:/bin", **isolated.to_env()}
    for command, shown in console_blocks():
        argv = shlex.split(command)
        assert argv[0] == "enforcer", command
        done = subprocess.run(
            [sys.executable, "-m", "enforcer", *argv[1:]],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
        printed = [line.rstrip() for line in done.stdout.splitlines()]
        for line in shown:
            if line.strip() in ("...", ""):
                continue
            assert line.rstrip() in printed, f"{command}: not printed: {line!r}"
