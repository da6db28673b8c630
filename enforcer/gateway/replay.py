"""Refusing a replayed signed decision record.

A signature proves who wrote a record, not when it was sent: anyone who can write to the
decisions topic could replay an old signed `allow` to lift a block in force, or an old block
that has since expired (applying it removes the subject's entry). Records of one subject arrive
in order (one key, one partition), so one issued before the newest applied is a replay; the
workers' clocks may differ by up to REPLAY_SKEW_S. Tombstones carry no issue time and are not
checked.
"""

from __future__ import annotations

import itertools

REPLAY_SKEW_S = 30.0


class ReplayGuard:
    def __init__(self, max_subjects: int) -> None:
        self.max_subjects = max(1, max_subjects)
        self._newest: dict[str, float] = {}  # subject key -> the newest issue time applied

    def replayed(self, key: str, issued_at: float) -> bool:
        """Whether a record is older than the subject's newest; remembers it when newer."""
        newest = self._newest.get(key)
        if newest is not None and issued_at < newest - REPLAY_SKEW_S:
            return True
        if newest is None or issued_at > newest:
            self._newest[key] = issued_at
            if len(self._newest) > self.max_subjects:
                for oldest in list(itertools.islice(self._newest, self.max_subjects // 2)):
                    del self._newest[oldest]
        return False
