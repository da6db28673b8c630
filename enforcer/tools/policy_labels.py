"""Ground truth for a what-if: which changed subjects are attackers and which are customers.

The labels come from `enforcer simulate --labels` (api_key -> population, attack flag, account),
or from an operator who labelled a recorded hour the same way. A key is judged by what a gateway
applying every decision would have done to its requests (the backtest's accounting), so a key
slowed by its account's degrade counts as affected as surely as one blocked by its own rule.
Accounts take their keys' labels: attack when all of their labelled keys are, benign when none
is, mixed otherwise. Other subjects (networks, campaigns) have no label of their own.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from enforcer.core.decisions import Subject
from enforcer.tools.policy_diff import PolicyDiff, SubjectChange

ATTACK, BENIGN, MIXED, UNLABELLED = "attack", "benign", "mixed", "unlabelled"


class Labels:
    def __init__(self, keys: dict[str, dict[str, Any]]) -> None:
        self.keys = keys
        accounts: dict[str, set[bool]] = defaultdict(set)
        populations: dict[str, set[str]] = defaultdict(set)
        for label in keys.values():
            account = label.get("account_id")
            if isinstance(account, str):
                accounts[account].add(bool(label.get("attack")))
                populations[account].add(str(label.get("population", "unknown")))
        self._accounts = accounts
        self._account_populations = populations

    def of(self, subject_key: str) -> tuple[str, str | None]:
        """(attack | benign | mixed | unlabelled, population or None) of one subject."""
        kind, value = Subject.from_key(subject_key)
        if kind == "api_key" and value in self.keys:
            label = self.keys[value]
            return (ATTACK if label.get("attack") else BENIGN), label.get("population")
        if kind == "account" and value in self._accounts:
            flags = self._accounts[value]
            verdict = MIXED if len(flags) > 1 else ATTACK if True in flags else BENIGN
            return verdict, ", ".join(sorted(self._account_populations[value]))
        return UNLABELLED, None


# What "touched by an action" means to each side: an attack key is caught, and one caught no
# more is lost; a benign key is affected (harm), and one affected no more is spared.
WORDS = {
    ATTACK: ("caught", "newly_caught", "lost"),
    BENIGN: ("affected", "newly_affected", "spared"),
}


def _group(diff: PolicyDiff, keys: list[str], words: tuple[str, str, str]) -> dict[str, Any]:
    old, new = diff.old.affected, diff.new.affected
    touched, gained, dropped = words
    return {
        "keys": len(keys),
        touched: {"old": sum(k in old for k in keys), "new": sum(k in new for k in keys)},
        gained: sum(k in new and k not in old for k in keys),
        dropped: sum(k in old and k not in new for k in keys),
        "requests": sum(diff.requests[k] for k in keys),
        "denied": {
            "old": sum(diff.old.denied[k] for k in keys),
            "new": sum(diff.new.denied[k] for k in keys),
        },
    }


def _direction(change: SubjectChange) -> str:
    return {1: "stricter", -1: "lighter", 0: "shadow_only"}[change.direction]


def labelled_figures(diff: PolicyDiff, labels: Labels, listed: int = 50) -> dict[str, Any]:
    """Attack keys newly caught and lost, benign keys newly affected and spared, requests denied
    to each side, the same per population, and the changed subjects counted by label."""
    seen = [k for k in labels.keys if diff.requests[k]]
    attack = [k for k in seen if labels.keys[k].get("attack")]
    benign = [k for k in seen if not labels.keys[k].get("attack")]
    by_population: dict[str, list[str]] = defaultdict(list)
    for key in seen:
        by_population[str(labels.keys[key].get("population", "unknown"))].append(key)
    populations = []
    # Benign populations first: harm is what an author must not miss.
    for population, keys in sorted(
        by_population.items(),
        key=lambda item: (bool(labels.keys[item[1][0]].get("attack")), item[0]),
    ):
        is_attack = bool(labels.keys[keys[0]].get("attack"))
        row = {"population": population, "attack": is_attack}
        populations.append({**row, **_group(diff, keys, WORDS[ATTACK if is_attack else BENIGN])})
    changed: dict[str, dict[str, int]] = defaultdict(
        lambda: {"stricter": 0, "lighter": 0, "shadow_only": 0}
    )
    for change in diff.changes:
        changed[labels.of(change.subject)[0]][_direction(change)] += 1
    harmed = [k for k in benign if k in diff.new.affected and k not in diff.old.affected]
    return {
        "attack": _group(diff, attack, WORDS[ATTACK]),
        "benign": _group(diff, benign, WORDS[BENIGN]),
        "populations": populations,
        "changed_subjects": {label: dict(counts) for label, counts in sorted(changed.items())},
        "benign_newly_affected": [
            {
                "api_key": k,
                "population": labels.keys[k].get("population"),
                "denied": diff.new.denied[k],
                "requests": diff.requests[k],
            }
            for k in sorted(harmed)[:listed]
        ],
    }
