"""Services the tests run as child processes (the worker, the sidecar, Prometheus): spawned with
their output in a log file, checked for an early exit while a test waits for them, and stopped
gracefully, so a failing test shows the tail of the service's own log."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from enforcer.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def enforcer_env(*settings: Settings | object) -> dict[str, str]:
    """The environment a child `enforcer` command sees: this one without any ENFORCER_
    variable, plus the given settings objects' variables (anything with `to_env()`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")}
    for s in settings:
        env.update(s.to_env())  # type: ignore[attr-defined]
    return env


class ChildProcess:
    name = "child"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has already exited."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text()

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]
