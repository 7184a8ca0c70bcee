"""Who the client is: its address, and whom the per-client cap counts a request against.

Behind nginx or any reverse proxy every request comes from the proxy's address. `TRUSTED_PROXIES` (CIDRs)
names those proxies: a request from one of them is taken to be from the address it put in
`X-Forwarded-For`, read from the right (each proxy appends the address it received from), skipping the
trusted proxies; the first address that is not one of them is the client. Without `TRUSTED_PROXIES`
the header is ignored, as anybody can send it. Written out rather than taken from django-ipware: it is
one rule over one header, and that library's default also trusts headers no proxy here sets.

The per-client cap (`MAX_CLIENT_REQUESTS`, `routing.lmstudio.admission`) counts a request without a key
against its address, and a keyed one against its key: a team behind one NAT address keeps a share per
person, and one person's key is one share whichever machines use it.
"""
from __future__ import annotations

from functools import cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Mapping

from django.conf import settings

from routing.security.keys import KeyGrant

Network = IPv4Network | IPv6Network


@cache
def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """`TRUSTED_PROXIES` parsed (a single address is a /32 or /128); a bad entry is a ValueError."""
    return tuple(ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())


def trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ip_address(address.strip().removeprefix("[").split("]")[0])
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(remote: str, forwarded_for: str | None, proxies: tuple[Network, ...]) -> str:
    """The client's address: `remote` (the peer), or, when the peer is a trusted proxy, the right-most
    address of `forwarded_for` that is not a trusted proxy (the left-most when all are)."""
    if not proxies or not forwarded_for or not trusted(remote, proxies):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    client = remote
    for hop in reversed(hops):
        try:
            ip_address(hop)
        except ValueError:
            return client  # not an address (a forged or garbled entry): the last trusted hop's word ends here
        client = hop
        if not trusted(hop, proxies):
            return hop
    return client


def client_of(remote: str, headers: Mapping[str, str]) -> str:
    """The client's address for a request from `remote` with these headers (lower-case names), by the
    `TRUSTED_PROXIES` setting."""
    return client_address(remote, headers.get("x-forwarded-for"), networks(tuple(settings.TRUSTED_PROXIES)))


def share(address: str, grant: KeyGrant | None, per_client: int) -> tuple[str, int | None]:
    """Whom the per-client cap counts a request against, and that cap (None: no cap of its own, the
    key's `--max-concurrent` governs it instead, counted by `routing.proxy.key_limits`)."""
    if grant is None:
        return address, per_client
    return f"the API key {grant.name!r}", None if grant.max_concurrent else per_client
