"""Probing consumers: ask every instance of a target's probed consumers which secret it signs
with (``rotator.probe.protocol`` is the protocol they implement).

``HttpProber(settings).probe(target)`` runs one round and returns one
``rotator.core.observation.ConsumerProbe`` per probed consumer; ``SystemResolver`` and
``StaticResolver`` resolve ``probe_dns`` names.

The prober (and with it httpx, about 75 ms to import) is loaded on first use, not with the
package: a pass with no rollout to verify never probes and should not pay for an HTTP stack.
"""

from typing import TYPE_CHECKING, Any

from rotator.probe.resolve import ResolveError, Resolver, StaticResolver, SystemResolver

if TYPE_CHECKING:
    from rotator.probe.prober import HttpProber, Observe

_FROM_PROBER = frozenset({"HttpProber", "Observe"})


def __getattr__(name: str) -> Any:
    if name in _FROM_PROBER:
        from rotator.probe import prober

        return getattr(prober, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "HttpProber",
    "Observe",
    "ResolveError",
    "Resolver",
    "StaticResolver",
    "SystemResolver",
]
