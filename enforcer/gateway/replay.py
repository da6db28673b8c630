"""Refusing a replayed signed decision record.

A signature proves who wrote a record, not when it was sent: anyone who can write to the
decisions topic could replay an old signed `allow` to lift a block in force, or an old block
that has since expired (applying it removes the subject's entry). Records of one subject arrive
in order (one key, one partition), so one issued before the newest applied is a replay; the
workers' clocks may differ by up to REPLAY_SKEW_S. A tombstone lifts a decision as an `allow`
does, so it is judged alike by the issue time in its signed header; one without that header
cannot be dated and is refused, since an old undated tombstone is exactly what a replay of one
looks like.
"""

from __future__ import annotations

import itertools

REPLAY_SKEW_S = 30.0


class ReplayGuard:
    def __init__(self, max_subjects: int) -> None:
        self.max_subjects = max(1, max_subjects)
        self._newest: dict[str, float] = {}  # subject key -> the newest issue time applied

    def replayed(self, key: str, issued_at: float | None) -> bool:
        """Whether a record is older than the subject's newest, or has no issue time (None);
        remembers its time when newer."""
        if issued_at is None:
            return True
        newest = self._newest.get(key)
        if newest is not None and issued_at < newest - REPLAY_SKEW_S:
            return True
        if newest is None or issued_at > newest:
            self._newest[key] = issued_at
            if len(self._newest) > self.max_subjects:
                for oldest in list(itertools.islice(self._newest, self.max_subjects // 2)):
                    del self._newest[oldest]
        return False
