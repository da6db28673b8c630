"""`make demo` is repeatable: two runs in a row on the same topics and consumer group both
find the attacker and spare every benign user."""

from __future__ import annotations

import subprocess
import sys

from enforcer.core.settings import Settings
from tests.conftest import ROOT, free_port
from tests.processes import enforcer_env


def test_the_demo_passes_twice_in_a_row(kafka_settings: Settings) -> None:
    settings = kafka_settings.with_(web_port=free_port())
    for run in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "enforcer", "demo", "--seconds", "60"],
            cwd=ROOT,
            env=enforcer_env(settings),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"run {run}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
        assert "demo ok" in done.stdout
