"""The local set-up scripts `make` runs before anything else."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pick_python_names_a_311_interpreter_that_can_build_a_venv() -> None:
    chosen = subprocess.run(
        [ROOT / "deploy" / "local" / "pick-python.sh"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    probe = subprocess.run(
        [chosen, "-c", "import sys, ensurepip, venv; print(sys.version_info[:2] >= (3, 11))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "True"
