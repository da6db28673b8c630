"""The `enforcer` command as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_worker_refuses_to_start_on_a_bad_policy_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'name: x\nversion: "1"\nwindows: [1m]\nrules:\n  - name: a\n    subject: api_key\n'
        '    whn: ["rps[1m] > 1"]\n    action: block\n    for: 1m\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    env["ENFORCER_POLICY_FILE"] = str(bad)
    done = subprocess.run(
        [sys.executable, "-m", "enforcer", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{bad}:7:5: rules[0].whn: unknown key; did you mean 'when'?" in done.stderr
