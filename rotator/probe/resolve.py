"""Name resolution for ``probe_dns`` consumers: a name's addresses are its instances.

A ``Resolver`` is any ``async (host, port) -> list[str]`` of IP address literals. The prober
checks what it answers (literals only, deduplicated, sorted, at most ``MAX_ADDRESSES``) whoever
wrote it, and maps a ``ResolveError`` to the consumer's error ``"DNS: <kind>"``.

``SystemResolver`` asks the system (``getaddrinfo``: ``/etc/hosts``, cluster DNS), every family:
a Kubernetes headless Service answers one address per ready pod, IPv4 and IPv6 alike.
``StaticResolver`` answers from a mapping, for tests and labs; the mapping is read on every call,
so a test may change it between rounds to make instances appear and disappear.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

#: A name resolving to more addresses than this is refused (a consumer has at most this many
#: ``probe_urls`` too): one round could not probe them all within its deadline anyway.
MAX_ADDRESSES: Final = 4096

Resolver = Callable[[str, int], Awaitable[list[str]]]

# getaddrinfo's failures, by kind; anything else is "failed". The kinds are a fixed set: they
# end up in status output and metric labels.
_GAI_KINDS: Final = {
    socket.EAI_NONAME: "no such name",
    socket.EAI_AGAIN: "temporary failure",
    socket.EAI_FAIL: "server failure",
}
for _name, _kind in (("EAI_NODATA", "no such name"), ("EAI_ADDRFAMILY", "no such name")):
    if hasattr(socket, _name):  # glibc only
        _GAI_KINDS[getattr(socket, _name)] = _kind


class ResolveError(Exception):
    """A name could not be resolved; ``kind`` is a short fixed phrase ("no such name")."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class SystemResolver:
    """Resolves with the system's ``getaddrinfo``, IPv4 and IPv6.

    It runs in the event loop's default executor (``loop.getaddrinfo``), which cannot be
    cancelled: a lookup still running when the round's deadline passes finishes in its thread,
    harmlessly, while the prober has already moved on (it does not wait for that executor).
    """

    async def __call__(self, host: str, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ResolveError(_GAI_KINDS.get(e.errno or 0, "failed")) from None
        except (OSError, UnicodeError) as e:  # an IDNA failure, a resolver's own error
            raise ResolveError("failed") from e
        # sockaddr[0] is the address for both families (IPv6 adds flow info and scope). The
        # prober normalizes what every resolver answers, once.
        return [str(sockaddr[0]) for *_, sockaddr in found]


class StaticResolver:
    """Answers from ``mapping`` (name -> addresses), read at every call; an unknown name is
    ``ResolveError("no such name")``, a name mapped to ``[]`` resolves to nothing."""

    def __init__(self, mapping: Mapping[str, Iterable[str]]) -> None:
        self.mapping = mapping

    async def __call__(self, host: str, port: int) -> list[str]:  # noqa: ARG002 - a Resolver
        try:
            addresses = self.mapping[host]
        except KeyError:
            raise ResolveError("no such name") from None
        return list(addresses)  # the prober normalizes them


def normalize(addresses: Iterable[str]) -> list[str]:
    """Addresses as canonical literals, deduplicated and sorted (IPv4 first); raises
    ``ResolveError`` on something that is not an address literal, or on too many.

    It runs in the round's event loop, where its CPU delays the deadline: IPv4 literals are
    checked and sorted as packed bytes (``inet_pton`` is strict: no short forms, no leading
    zeros), not as ``ipaddress`` objects, whose parsing and comparisons made 32 names of 4,096
    addresses cost seconds."""
    v4: set[bytes] = set()
    v6: set[ipaddress.IPv6Address] = set()
    for address in addresses:
        try:
            v4.add(socket.inet_pton(socket.AF_INET, address))
        except (OSError, TypeError, ValueError):
            try:
                parsed = ipaddress.ip_address(address)
            except ValueError:
                raise ResolveError("not an address") from None
            if isinstance(parsed, ipaddress.IPv4Address):  # pragma: no cover - inet_pton took it
                v4.add(parsed.packed)
            else:
                v6.add(parsed)
        if len(v4) + len(v6) > MAX_ADDRESSES:
            raise ResolveError(f"more than {MAX_ADDRESSES} addresses")
    ordered = [socket.inet_ntop(socket.AF_INET, packed) for packed in sorted(v4)]
    return ordered + [str(a) for a in sorted(v6, key=lambda a: (int(a), str(a)))]
