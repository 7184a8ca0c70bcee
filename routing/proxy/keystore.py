"""The API keys in force: the database's enabled keys as a `KeyRing` snapshot, kept fresh in a worker
thread.

The head gate runs in Twisted's reactor (before the body is read) and in the API middleware, for every
request: it must never wait on the database. `KeyStore.ring()` returns the snapshot in hand; the store's
own thread, started by the first look, reads the keys again every `KEY_CHECK_INTERVAL` seconds (one small
query: the table holds a key per person) and swaps the snapshot whole, so a key made or revoked in any
process is seen within about a second, idle or busy, and a saved key in this process at once
(`invalidate`). Only the very first look waits, so that a process that has not read its keys yet never
serves the API open. When the database cannot be read, the last snapshot stays (none yet: only
`API_KEY` is accepted).

The keys' `last_used_at` is written by the same thread, from the names the gate saw since the last
check: no write per request.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from django.apps import apps
from django.db import DatabaseError, close_old_connections

from routing.core.outage import OutageLog
from routing.security.keys import CLOSED_RING, KeyGrant, KeyRing, parse_scope

log = logging.getLogger(__name__)

# How often, at most, the keys are read again (seconds): a revoked key is refused within about this long.
KEY_CHECK_INTERVAL = 1.0
FIRST_READ_TIMEOUT = 10.0  # seconds the first look waits for the first read (then: only API_KEY)


def read_ring() -> KeyRing:
    """The enabled keys, read now (sync: a worker thread, a command)."""
    rows = apps.get_model("routing", "ApiKey").objects.filter(enabled=True)
    return KeyRing({row.key_hash: KeyGrant(
        name=row.name, scope=parse_scope(row.aliases), max_concurrent=row.max_concurrent,
        requests_per_minute=row.requests_per_minute, tokens_per_day=row.tokens_per_day,
        expires_at=row.expires_at, hash=row.key_hash) for row in rows})


class KeyStore:
    def __init__(self, interval: float = KEY_CHECK_INTERVAL):
        self.interval = interval
        self._ring: KeyRing | None = None
        self._loaded = threading.Event()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._used: set[str] = set()
        self._used_lock = threading.Lock()
        self._outage = OutageLog(log)  # said once per outage of the database, not once a second

    def ring(self) -> KeyRing:
        """The keys in force, never older than about `interval`; only the very first look waits."""
        ring = self._ring
        if ring is not None:
            return ring
        self._start()
        self._loaded.wait(FIRST_READ_TIMEOUT)
        return self._ring if self._ring is not None else CLOSED_RING

    def invalidate(self):
        """Read the keys again now (a key saved or revoked in this process)."""
        self._wake.set()

    def used(self, name: str):
        """Note that a key was used (its `last_used_at` is written at the next check)."""
        with self._used_lock:
            self._used.add(name)

    def close(self):
        """Stop the store's thread (after the read it may be in)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _start(self):
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="api-keys", daemon=True)
                self._thread.start()

    def _run(self):
        """The store's thread: read the keys, then again every `interval` (or at once when woken)."""
        while not self._stopped:
            try:
                self._check()
            except Exception:  # noqa: BLE001  (the thread must outlive any one failed read)
                log.exception("API keys not refreshed")
            finally:
                self._loaded.set()  # the first look waits no longer: CLOSED_RING if nothing was read
            self._wake.wait(self.interval)
            self._wake.clear()

    def _check(self):
        try:
            ring = read_ring()
            with self._used_lock:
                used, self._used = self._used, set()
            if used:
                apps.get_model("routing", "ApiKey").objects.filter(name__in=used).update(
                    last_used_at=datetime.now(timezone.utc))
            self._ring = ring
            self._outage.recovered("API keys readable again")
        except DatabaseError as exc:
            self._outage.failed("API keys not refreshed (%s); %s", exc, "only API_KEY is accepted"
                                if self._ring is None else "keeping the last ones")
            self._ring = self._ring if self._ring is not None else CLOSED_RING
        finally:
            close_old_connections()  # this thread serves no request that would do it (CONN_MAX_AGE)
