"""Which template fingerprints have earned cross-key tracking: those seen more than once.

Millions of benign prompts are unique; tracking each one's users in Redis would grow without
bound. A fingerprint is tracked only from its second sighting in this worker, in its epoch or
the one before, remembered in a fixed-size table, so memory stays constant however many unique
prompts arrive. A false positive only tracks one unique prompt more.

The table is a Bloom filter whose cells hold the epoch that last set them rather than a bit: a
fingerprint was seen when its three cells all hold this epoch or the previous one. One table
instead of a filter per epoch halves the lookups on a path every event takes.
"""

from __future__ import annotations

# Epoch stamps cycle through 1..255; 0 marks a cell never set.
_STAMPS = 255
_NONE = -1  # the previous stamp when the previous epoch saw nothing
_SALT = 0x9E3779B97F4A7C15


class RepeatGate:
    def __init__(self, cells: int = 1 << 23, epoch_s: float = 600.0) -> None:
        if cells & (cells - 1):
            raise ValueError("cells must be a power of two")
        self.cells = cells
        self.epoch_s = epoch_s
        self._stamps = bytearray(cells)
        self._epoch: int | None = None
        self._current = 1
        self._previous = _NONE

    def _advance(self, epoch: int) -> None:
        if self._epoch is None:
            self._epoch = epoch
            return
        if epoch <= self._epoch:  # a late event counts in the current epoch
            return
        following = self._current % _STAMPS + 1
        if following == 1:
            # The stamps wrapped: a cell last set 255 epochs ago would pass for a fresh one.
            self._stamps = bytearray(self.cells)
        self._previous = self._current if epoch == self._epoch + 1 else _NONE
        self._current = following
        self._epoch = epoch

    def seen_before(self, fingerprint: str, ts: float) -> bool:
        """Record a sighting; True when it was already seen in this epoch or the last."""
        epoch = int(ts // self.epoch_s)
        if epoch != self._epoch:
            self._advance(epoch)
        h = int(fingerprint[-16:], 16)
        # A prefix ("s" for system prompts) keeps kinds of fingerprint apart.
        if len(fingerprint) > 16:
            h ^= _SALT
        mask = self.cells - 1
        a, b, c = h & mask, (h >> 21) & mask, (h >> 42) & mask
        stamps, current, previous = self._stamps, self._current, self._previous
        sa, sb, sc = stamps[a], stamps[b], stamps[c]
        stamps[a] = stamps[b] = stamps[c] = current
        seen = (current, previous)
        return sa in seen and sb in seen and sc in seen
