"""Whether a key's request left from another network than its previous one.

A person keeps a home network for hours (a phone adds a second); a key behind a rotating proxy
pool changes network on nearly every request, whatever the pool's size. Counting the changes
needs only each key's last network, kept here in a fixed-size table indexed by a hash of the
key, so memory stays constant however many keys arrive. Two keys that share a cell can make a
change look like none or the reverse; at a million cells that is rare and only blurs a share.
The pipeline's process sees each key's requests in order (the event topic is keyed by key).
"""

from __future__ import annotations

from array import array
from zlib import crc32


class NetworkHops:
    def __init__(self, cells: int = 1 << 20) -> None:
        if cells & (cells - 1):
            raise ValueError("cells must be a power of two")
        self._mask = cells - 1
        self._last = array("I", bytes(4 * cells))  # 0: no request seen in this cell

    def moved(self, api_key: str, network: str) -> bool:
        """Record the request; True when the key's previous request came from another network."""
        # CRC-32, not hash(): Python salts str hashes per process, so which keys share a cell
        # would differ run to run, and a replay or a policy diff would not repeat itself.
        cell = crc32(api_key.encode("utf-8", "surrogatepass")) & self._mask
        tag = crc32(network.encode()) or 1
        last = self._last[cell]
        self._last[cell] = tag
        return last != 0 and last != tag
