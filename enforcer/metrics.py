"""Every Prometheus metric enforcer exports, in one module, prefix `enforcer_`.

No label takes per-key values (api keys, IPs, accounts): label sets are small and fixed, so
cardinality stays bounded however much traffic there is.
"""

from __future__ import annotations

from prometheus_client import Counter, Info

POLICY_RELOADS = Counter(
    "enforcer_policy_reloads",
    "Policy reload attempts by result (success, failure); a failure keeps the last good policy",
    ["result"],
)
POLICY_INFO = Info("enforcer_policy", "The active policy: name, version and content hash")
