"""Every Redis key enforcer writes is built here.

A key is `<prefix>:{<group>}:<kind>:<value>:<part>`. The hash tag is one of SLOT_GROUPS groups
derived from the subject, so all of one subject's windows, dedupe set and decision state land on
one Redis Cluster slot and one Lua call can touch them atomically; and a batch's subjects fall
into at most SLOT_GROUPS groups, so on a cluster the window update costs one script call per
group rather than one per subject (one Redis takes calls of many groups, see
enforcer.store.codec).
"""

from __future__ import annotations

import zlib
from functools import lru_cache

from enforcer.core.decisions import Subject

SLOT_GROUPS = 128


@lru_cache(maxsize=65536)
def slot_group(subject: Subject) -> str:
    return f"g{zlib.crc32(subject.key.encode()) % SLOT_GROUPS:03d}"


def subject_key(prefix: str, subject: Subject, part: str) -> str:
    return _subject_base(prefix, slot_group(subject), subject) + part


def _subject_base(prefix: str, group: str, subject: Subject) -> str:
    """Every key of a subject up to its part: `<prefix>:{<group>}:<kind>:<value>:`."""
    return f"{prefix}:{{{group}}}:{subject.kind}:{subject.value}:"


def dedupe_set_key(prefix: str, group: str, epoch: int) -> str:
    """The events counted in one slot group and lateness epoch, as subject-and-event digests
    (see update_windows.lua)."""
    return f"{prefix}:{{{group}}}:seen:{epoch}"


def window_key(prefix: str, subject: Subject, group: str | None = None) -> str:
    """All of a subject's windows in one string of float32 cells (see window_state.lua).
    Named "wc": the strings of doubles of earlier releases, under "ws", are left to expire
    (a worker never reads another layout's string, and no two releases share a key), and
    Redis may still hold per-bucket hashes of releases before 0.1 under "w", where a key of
    another type would fail the script. Two letters keep the name within its allocator size
    class, the name being stored with every subject. `group` saves hashing the subject again
    when its slot group is known."""
    if group is None:
        return subject_key(prefix, subject, "wc")
    return _subject_base(prefix, group, subject) + "wc"


def state_key(prefix: str, subject: Subject, mode: str) -> str:
    return subject_key(prefix, subject, f"state:{mode}")


def strikes_key(prefix: str, subject: Subject, mode: str, rule: str) -> str:
    """When one rule published decisions for a subject: the escalation ladder's strike count."""
    return subject_key(prefix, subject, f"strikes:{mode}:{rule}")


def template_key(prefix: str, subject: Subject, epoch: int) -> str:
    """A subject's template counts in one content epoch (fingerprints and bands, capped)."""
    return subject_key(prefix, subject, f"tpl:{epoch}")


def template_hll_key(prefix: str, subject: Subject, epoch: int) -> str:
    """Distinct template fingerprints a subject used in one content epoch."""
    return subject_key(prefix, subject, f"tplhll:{epoch}")


def template_keys(prefix: str, group: str, subject: Subject, epoch: int) -> tuple[str, ...]:
    """template_key and template_hll_key of an epoch and the one before, given the subject's
    slot group: the window update names them per key and batch, and spares the group's hash."""
    base = _subject_base(prefix, group, subject)
    return (
        f"{base}tpl:{epoch}",
        f"{base}tpl:{epoch - 1}",
        f"{base}tplhll:{epoch}",
        f"{base}tplhll:{epoch - 1}",
    )


def campaign_key(prefix: str, template: Subject, part: str, epoch: int) -> str:
    """Distinct api keys, networks or accounts (`part`) using one template in one epoch."""
    return subject_key(prefix, template, f"{part}:{epoch}")


def throttle_key(prefix: str, subject: Subject) -> str:
    """The check sidecars' shared GCRA state (theoretical arrival time) of a throttled subject."""
    return subject_key(prefix, subject, "gcra")


def namespace_pattern(prefix: str) -> str:
    """Matches every key under a prefix; used to remove a backtest's isolated namespace."""
    return f"{prefix}:*"
