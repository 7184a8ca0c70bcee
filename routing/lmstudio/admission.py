"""Fair use of LM Studio: how many model requests may be open upstream, in all and per client.

Every model request takes a slot before it is sent and gives it back when its exchange is over (the
last streamed byte, an error, or the client hanging up). There are UPSTREAM_MAX_CONNECTIONS slots per
process: when all are taken a request waits up to UPSTREAM_POOL_TIMEOUT seconds, then gets a 503 that
says the proxy is at its limit (LM Studio is fine: "cannot reach LM Studio" would send people looking
in the wrong place). One client may hold at most MAX_CLIENT_REQUESTS slots; beyond that its requests are a 429 at
once, so one busy client cannot take every slot and starve the others. A client is its address, or for a
request with an API key that key (`routing.security.clients.share`); a key with its own max-concurrent
limit is held to that instead.

The connection pools are a few connections larger than the slots (`POOL_RESERVE`), so that model lists
and `/ready` never queue behind generations.
"""
from __future__ import annotations

import asyncio
import collections
from typing import Callable

from routing.core.errors import TooManyRequests, UpstreamBusy
from routing.security.clients import share
from routing.security.keys import KeyGrant

POOL_RESERVE = 8


class Admission:
    """Slots for upstream requests: `slots` in all, `per_client` for one client, `wait` seconds to wait."""

    def __init__(self, slots: int, per_client: int, wait: float):
        self.slots, self.per_client, self.wait = slots, per_client, wait
        self.by_client: collections.Counter[str] = collections.Counter()
        self._free = asyncio.Semaphore(slots)

    def busy_message(self) -> str:
        return (f"the proxy is at its upstream concurrency limit ({self.slots} requests open to LM Studio, "
                f"UPSTREAM_MAX_CONNECTIONS) and none finished within {self.wait:g} s: try again shortly")

    @property
    def busy(self) -> bool:
        """Every slot is taken."""
        return self._free.locked()

    async def enter(self, address: str, grant: KeyGrant | None = None) -> Callable[[], None]:
        """Take a slot for the client at `address` with the key `grant`; returns the function that gives
        it back (idempotent)."""
        client, cap = share(address, grant, self.per_client)
        if cap is not None and self.by_client[client] >= cap:
            raise TooManyRequests(f"too many concurrent requests from {client or 'this client'}: at most "
                                  f"{cap} may be open at once (MAX_CLIENT_REQUESTS)")
        self.by_client[client] += 1
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait)
        except TimeoutError:
            self._leave(client)
            raise UpstreamBusy(self.busy_message()) from None
        except BaseException:
            self._leave(client)
            raise
        released = False

        def release():
            nonlocal released
            if not released:
                released = True
                self._free.release()
                self._leave(client)

        return release

    def _leave(self, client: str):
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]
