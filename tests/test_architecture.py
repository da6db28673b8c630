"""The package's shape is checked like its behaviour: imports point down the layers, with no
cycles (contracts in pyproject.toml, run by import-linter), and no module grows past what a
reader holds in their head."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "enforcer"
MAX_LINES = 500
# Modules allowed past the limit, each with its reason. Keep this list short.
LONGER = {
    # Cue phrase tables in seven languages and the patterns built from them: data, not logic.
    "engine/features/elicitation.py": "phrase tables",
}


def _lint_imports() -> str:
    found = Path(sys.executable).with_name("lint-imports")
    return str(found) if found.exists() else (shutil.which("lint-imports") or "lint-imports")


def test_imports_point_down_the_layers_without_cycles() -> None:
    run = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout


def test_no_module_grows_past_the_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    over = {path: n for path, n in long.items() if path not in LONGER}
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_no_lua_script_grows_past_the_limit() -> None:
    # A long script is kept in parts (enforcer.store.client.Script splices them).
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.lua")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"Lua scripts over {MAX_LINES} lines: {long}"
