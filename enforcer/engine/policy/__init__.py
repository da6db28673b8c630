"""The policy: what people edit to say when enforcer throttles, degrades or blocks."""

from enforcer.engine.policy.checks import PolicyError, PolicyIssue
from enforcer.engine.policy.loader import load_policy, parse_policy
from enforcer.engine.policy.model import Condition, Policy, Rule

__all__ = [
    "Condition",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Rule",
    "load_policy",
    "parse_policy",
]
