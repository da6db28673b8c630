"""Per-request content features: pure functions of one gateway event's text.

Nothing here does I/O or keeps cross-request state beyond bounded hash caches,
so the window store and detectors can call these on every event in a batch.
"""
