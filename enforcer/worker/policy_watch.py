"""Hot reload: watch the policy file and swap the policy in force when a good new version lands.

The worker calls `PolicyWatcher.poll()` about once a second. A poll is cheap: it compares the
file's stat (mtime, size, inode) with the last one and reads the file only when that changed,
or every `recheck_every` polls in case an edit kept both mtime and size. A new text must read
the same on two consecutive polls before it is judged, so an editor caught half-way through a
save is not refused for a file nobody meant to deploy.

A good version replaces the policy whole (PolicyHolder.current), so the next batch sees it and
no batch sees a mix. A bad version is refused with one log line naming every error as
file:line:column, and the last good policy keeps running. Nothing here touches the Kafka
consumer, so a reload never causes a consumer-group rebalance.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import NamedTuple, Protocol

from enforcer.engine.policy.checks import PolicyError, PolicyIssue
from enforcer.engine.policy.loader import content_hash, parse_policy
from enforcer.engine.policy.model import Policy
from enforcer.worker import metrics

log = logging.getLogger("enforcer.policy")
# The digest of a file that cannot be read (deleted, unreadable, not UTF-8).
_UNREADABLE = "(unreadable)"


class Holder(Protocol):
    current: Policy


class ReloadOutcome(NamedTuple):
    result: str  # "applied" or "refused"
    version_tag: str  # the policy in force afterwards
    issues: tuple[PolicyIssue, ...] = ()


class PolicyWatcher:
    def __init__(self, path: str | Path, holder: Holder, recheck_every: int = 10) -> None:
        self.path = Path(path)
        self.holder = holder
        # The file and issues of the edit on disk that was refused, until a good edit replaces
        # it: /readyz names it, since the worker runs on while the file says otherwise.
        self.rejected: tuple[str, tuple[str, ...]] | None = None
        self.recheck_every = recheck_every
        self._polls = 0
        self._stat: tuple[int, int, int] | None = None
        # The text whose fate is decided: the file as it was at start-up (the running policy),
        # then the last applied or refused version.
        self._judged = self._read_hash()[1]
        self._pending: str | None = None

    def _read_hash(self) -> tuple[str | None, str]:
        try:
            stat = os.stat(self.path)
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            self._stat = None
            return None, _UNREADABLE
        self._stat = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        return text, content_hash(text)

    def _stat_changed(self) -> bool:
        try:
            stat = os.stat(self.path)
        except OSError:
            return self._stat is not None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._stat

    def poll(self) -> ReloadOutcome | None:
        """Apply or refuse a changed policy file; None when there is nothing to decide yet."""
        self._polls += 1
        if (
            self._pending is None
            and not self._stat_changed()
            and self._polls % self.recheck_every != 0
        ):
            return None
        text, digest = self._read_hash()
        if digest == self._judged:
            self._pending = None
            return None
        if digest != self._pending:
            self._pending = digest  # judge it at the next poll if it still reads the same
            return None
        self._pending = None
        self._judged = digest
        return self._apply(text)

    def _apply(self, text: str | None) -> ReloadOutcome:
        running = self.holder.current
        source = str(self.path)
        try:
            if text is None:
                issue = PolicyIssue(source, 0, 0, "(file)", "cannot read the policy file")
                raise PolicyError([issue])
            try:
                policy = parse_policy(text, source)
            except PolicyError:
                raise
            except Exception as exc:  # a loader bug must not stop the worker or the watcher
                log.exception("policy loader failed on %s", source)
                issue = PolicyIssue(source, 0, 0, "(loader)", f"internal error: {exc!r}")
                raise PolicyError([issue]) from exc
        except PolicyError as exc:
            metrics.POLICY_RELOADS.labels(result="failure").inc()
            metrics.POLICY_LAST_RELOAD_SUCCESSFUL.set(0)
            metrics.POLICY_LAST_RELOAD_TIMESTAMP.set(time.time())
            self.rejected = (source, tuple(str(i) for i in exc.issues))
            log.error(
                "policy reload refused, keeping %s: %s",
                running.version_tag,
                "; ".join(str(i) for i in exc.issues),
                extra={
                    "policy_file": source,
                    "policy_version": running.version_tag,
                    "issues": [str(i) for i in exc.issues],
                },
            )
            return ReloadOutcome("refused", running.version_tag, tuple(exc.issues))
        self.holder.current = policy
        self.rejected = None
        metrics.POLICY_RELOADS.labels(result="success").inc()
        metrics.POLICY_LAST_RELOAD_SUCCESSFUL.set(1)
        metrics.POLICY_LAST_RELOAD_TIMESTAMP.set(time.time())
        metrics.policy_loaded(policy)
        log.info(
            "policy reloaded: %s (was %s)",
            policy.version_tag,
            running.version_tag,
            extra={"policy_file": source, "policy_version": policy.version_tag},
        )
        return ReloadOutcome("applied", policy.version_tag)
