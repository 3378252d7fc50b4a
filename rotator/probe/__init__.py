"""Probing consumers: ask every instance of a target's probed consumers which secret it signs
with (``rotator.probe.protocol`` is the protocol they implement).

``HttpProber(settings).probe(target)`` runs one round and returns one
``rotator.core.observation.ConsumerProbe`` per probed consumer; ``SystemResolver`` and
``StaticResolver`` resolve ``probe_dns`` names.
"""

from rotator.probe.prober import HttpProber, Observe
from rotator.probe.resolve import ResolveError, Resolver, StaticResolver, SystemResolver

__all__ = [
    "HttpProber",
    "Observe",
    "ResolveError",
    "Resolver",
    "StaticResolver",
    "SystemResolver",
]
