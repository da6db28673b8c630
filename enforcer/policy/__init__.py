"""The policy: what people edit to say when enforcer throttles, degrades or blocks."""

from enforcer.policy.loader import PolicyError, PolicyIssue, load_policy, parse_policy
from enforcer.policy.model import Condition, Policy, Rule

__all__ = [
    "Condition",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Rule",
    "load_policy",
    "parse_policy",
]
