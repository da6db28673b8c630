"""Every Redis key enforcer writes is built here.

A key is `<prefix>:{<kind>:<value>}:<part>`: the hash tag makes all of one subject's windows,
its dedupe set and its decision state land on one Redis Cluster slot, so one Lua script can
touch them atomically.
"""

from __future__ import annotations

from enforcer.decisions import Subject


def subject_key(prefix: str, subject: Subject, part: str) -> str:
    return f"{prefix}:{{{subject.kind}:{subject.value}}}:{part}"


def dedupe_key(prefix: str, subject: Subject) -> str:
    return subject_key(prefix, subject, "seen")


def window_key(prefix: str, subject: Subject, seconds: int) -> str:
    return subject_key(prefix, subject, f"w{seconds}")


def state_key(prefix: str, subject: Subject, mode: str) -> str:
    return subject_key(prefix, subject, f"state:{mode}")


def namespace_pattern(prefix: str) -> str:
    """Matches every key under a prefix; used to remove a backtest's isolated namespace."""
    return f"{prefix}:*"
