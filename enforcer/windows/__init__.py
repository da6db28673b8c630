"""Sliding windows in Redis: the only place enforcer keeps state between events."""
