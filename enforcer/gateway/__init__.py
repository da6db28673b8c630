"""Gateway integration: three ways for an API gateway to work with enforcer.

- DecisionCache: embed it to read the decisions topic and answer lookups in memory.
- the check sidecar (`enforcer gateway serve`, enforcer.gateway.sidecar): ask it per request
  over HTTP, as NGINX auth_request, Envoy ext_authz or Kong do.
- EventPublisher: embed it to publish gateway_event.v1 records without blocking requests.
"""

from enforcer.gateway.cache import CacheStats, DecisionCache
from enforcer.gateway.publisher import EventPublisher, PublisherStats
from enforcer.gateway.verdicts import ThrottleLimit, Verdict

__all__ = [
    "CacheStats",
    "DecisionCache",
    "EventPublisher",
    "PublisherStats",
    "ThrottleLimit",
    "Verdict",
]
