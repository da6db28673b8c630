"""Which template fingerprints have earned cross-key tracking: those seen more than once.

Millions of benign prompts are unique; tracking each one's users in Redis would grow without
bound. A fingerprint is tracked only from its second sighting in this worker, remembered in a
fixed-size Bloom filter that is rotated every epoch, so memory stays constant however many
unique prompts arrive. A false positive only tracks one unique prompt more.
"""

from __future__ import annotations


class RepeatGate:
    def __init__(self, bits: int = 1 << 23, epoch_s: float = 600.0) -> None:
        self.bits = bits
        self.epoch_s = epoch_s
        self._current = bytearray(bits // 8)
        self._previous = bytearray(bits // 8)
        self._epoch: int | None = None

    def _positions(self, fingerprint: str) -> tuple[int, int, int]:
        h = int(fingerprint[-16:], 16)
        mask = self.bits - 1
        # A prefix ("s" for system prompts) keeps kinds of fingerprint apart.
        if len(fingerprint) > 16:
            h ^= 0x9E3779B97F4A7C15
        return h & mask, (h >> 21) & mask, (h >> 42) & mask

    def seen_before(self, fingerprint: str, ts: float) -> bool:
        """Record a sighting; True when it was already seen in this epoch or the last."""
        epoch = int(ts // self.epoch_s)
        if self._epoch is None:
            self._epoch = epoch
        elif epoch > self._epoch:
            self._previous = (
                self._current if epoch == self._epoch + 1 else bytearray(self.bits // 8)
            )
            self._current = bytearray(self.bits // 8)
            self._epoch = epoch
        found_current = found_previous = True
        for pos in self._positions(fingerprint):
            byte, bit = pos >> 3, 1 << (pos & 7)
            if not self._current[byte] & bit:
                found_current = False
                self._current[byte] |= bit
            if not self._previous[byte] & bit:
                found_previous = False
        return found_current or found_previous
