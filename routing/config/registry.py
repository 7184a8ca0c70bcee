"""The effective route table in force: `routes.yaml` merged with what the admin stores.

The merge rule (`RouteTable.merged_with`): an enabled admin alias wins over a routes.yaml alias of the
same (normalised) name; an enabled admin endpoint over a routes.yaml endpoint of the same method and
path; each default set in the admin over the file's (copy-on-write: editing a file alias in the admin
stores an override; deleting or disabling the override lets the file's serve again). Every table is
immutable; a reload swaps one reference.

Hot reload, without a database query per request:
- routes.yaml is looked at (`stat`) at most every `STAT_INTERVAL` seconds and re-read when it changed.
  A file that breaks while the server runs keeps the last good table in force; the error is logged once
  and kept in `RouteRegistry.error` (the admin shows it).
- The admin's store (aliases, defaults, endpoints) is kept in memory. Saving or deleting a row
  invalidates it at once in this process (model signals, after the transaction commits); other
  processes check, in a worker thread, on their first request after `DB_CHECK_INTERVAL` seconds
  through cheap aggregate queries (`max(updated_at), count` per table) and reload only when those
  changed; that request does not wait for the check. So an edit is live on this process's next
  request and on every process within ~1 s.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import fields
from pathlib import Path

from asgiref.sync import sync_to_async
from django.apps import apps
from django.db import DatabaseError, close_old_connections
from django.db.models import Count, Max

from routing.config.dump import dump_routes
from routing.config.loader import RouteTableError, load_routes
from routing.config.table import Defaults, RouteAlias, RouteTable, TableOverrides
from routing.core.outage import OutageLog

log = logging.getLogger(__name__)

# How often, at most, the file's modification time is looked at (seconds).
STAT_INTERVAL = 0.5
EXPORT_HEADER = ("Effective route table: routes.yaml merged with what the admin stores.\n"
                 "Exported by the proxy; valid as a routes.yaml (`manage.py routes import` reads it too).")
# How often, at most, the database is asked whether the admin's store changed (seconds).
DB_CHECK_INTERVAL = 1.0


def read_routes_file(path: Path) -> RouteTable:
    """Load a routes file; a missing file is an empty table (every name passes through)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return load_routes(stream, source=str(path))
    except FileNotFoundError:
        return RouteTable()
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteTableError(f"cannot read: {exc}", str(path)) from None


def stored(name: str):
    """A model of the admin's store (`Alias`, `RouteDefaults`, `DeclaredEndpoint`, `Backend`), looked up
    in Django's app registry: the models validate with this package's loader, so this package names
    them rather than importing them."""
    return apps.get_model("routing", name)


STORE = ("Alias", "RouteDefaults", "DeclaredEndpoint", "Backend")


def admin_signature():
    """What changes whenever an admin row (alias, defaults, endpoint) is created, edited or deleted."""
    return tuple(tuple(stored(name).objects.aggregate(latest=Max("updated_at"), count=Count("pk")).values())
                 for name in STORE)


def _valid_rows(queryset, convert, what: str) -> tuple:
    """The rows converted for the route table. A row that fails validation (written around the admin,
    or valid under older rules) is skipped and logged rather than taking every request down with it."""
    out = []
    for row in queryset:
        try:
            out.append(convert(row))
        except RouteTableError as exc:
            log.error("admin %s '%s' skipped: %s", what, getattr(row, "name", row), exc.message)
    return tuple(out)


def read_admin_aliases(exclude_pk=None) -> tuple[RouteAlias, ...]:
    """The enabled admin aliases as route-table aliases (sync ORM: not for the event loop)."""
    alias = stored("Alias")
    rows = alias.objects.filter(enabled=True).exclude(pk=exclude_pk)
    return _valid_rows(rows, alias.to_route_alias, "alias")


def read_admin_overrides(exclude_alias_pk=None) -> TableOverrides:
    """Everything the admin stores over routes.yaml (sync ORM: not for the event loop)."""
    endpoint, backend = stored("DeclaredEndpoint"), stored("Backend")
    endpoints = _valid_rows(endpoint.objects.filter(enabled=True), endpoint.to_route_endpoint, "endpoint")
    backends = _valid_rows(backend.objects.filter(enabled=True), backend.to_route_backend, "backend")
    try:
        defaults = stored("RouteDefaults").load().overrides()
    except RouteTableError as exc:
        log.error("admin defaults skipped: %s", exc.message)
        defaults = {}
    return TableOverrides(aliases=read_admin_aliases(exclude_alias_pk), defaults=defaults,
                          endpoints=endpoints, backends=backends)


def _read_admin_state():
    try:
        return admin_signature(), read_admin_overrides()
    except DatabaseError as exc:  # not migrated yet: serve the file alone rather than fail
        log.warning("admin store unavailable, serving routes.yaml alone: %s", exc)
        return None, TableOverrides()


class RouteRegistry:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.error: RouteTableError | None = None
        self._signature = self._stat()
        self._checked = time.monotonic()
        self._table = read_routes_file(self.path)  # a broken file at start-up raises
        # The admin's store: (db signature, TableOverrides), swapped as one reference.
        self._admin: tuple | None = None
        self._admin_checked = float("-inf")
        self._admin_refresh: asyncio.Future | None = None
        self._store_outage = OutageLog(log)  # said once per outage of the database, not once a second
        self._merged: tuple = (None, None, None)  # (file table, admin overrides, merged table)

    def file_table(self) -> RouteTable:
        """The routes.yaml table in force, reloaded first if the file changed since the last look."""
        now = time.monotonic()
        if now - self._checked >= STAT_INTERVAL:
            self._checked = now
            signature = self._stat()
            if signature != self._signature:
                self._signature = signature
                self._reload()
        return self._table

    async def table(self) -> RouteTable:
        """The effective table for a proxied request: no database query unless one is due."""
        if self._admin is None or time.monotonic() - self._admin_checked >= DB_CHECK_INTERVAL:
            await self._refresh_admin()
        return self._merge(self.file_table(), self._admin[1])

    def current_table(self) -> RouteTable:
        """The effective table read from the database now (sync code: the admin, commands)."""
        self._admin = _read_admin_state()
        self._admin_checked = time.monotonic()
        return self._merge(self.file_table(), self._admin[1])

    def table_without_alias(self, pk) -> RouteTable:
        """The effective table as if the admin alias `pk` did not exist (None: as it is), read from the
        database now: what an edited alias is validated against (sync code)."""
        return self.file_table().merged_with(read_admin_overrides(exclude_alias_pk=pk))

    def export_yaml(self) -> str:
        """The effective table as routes.yaml text (sync: reads the database)."""
        return dump_routes(self.current_table(), EXPORT_HEADER)

    def invalidate_admin_store(self):
        """Make the next request reload the admin's store (called when a row is saved or deleted)."""
        self._admin_checked = float("-inf")
        self._admin = None if self._admin is None else (None, self._admin[1])

    async def _refresh_admin(self):
        """One check in flight at a time. Only a request with no store in hand, or one invalidated by an
        edit in this process, waits for it; the others go on with the store they have (the periodic
        check of another process's edits was a thread round trip and a query in a request's path)."""
        if self._admin_refresh is None:
            # Not thread-sensitive: a slow admin view in Django's one sync thread must not hold up requests.
            check = sync_to_async(self._check_admin, thread_sensitive=False)
            self._admin_refresh = asyncio.ensure_future(check())
            self._admin_refresh.add_done_callback(self._refreshed)
        if self._admin is None or self._admin[0] is None:
            await asyncio.shield(self._admin_refresh)

    def _refreshed(self, future: asyncio.Future):
        self._admin_refresh = None
        if not future.cancelled():
            future.exception()  # retrieved: _check_admin logs its own failures

    def _check_admin(self):
        """Runs in a worker thread: reload the admin's store only when the signature moved."""
        try:
            signature = admin_signature()
            if self._admin is None or signature != self._admin[0]:
                self._admin = (signature, read_admin_overrides())
            self._store_outage.recovered("admin store readable again")
        except DatabaseError as exc:
            self._store_outage.failed("admin store not refreshed (%s); %s", exc, "serving routes.yaml alone"
                                      if self._admin is None else "keeping the last one")
            self._admin = self._admin or (None, TableOverrides())
        finally:
            close_old_connections()  # this pool thread serves no request that would do it (CONN_MAX_AGE)
        self._admin_checked = time.monotonic()

    def _merge(self, file_table: RouteTable, admin: TableOverrides) -> RouteTable:
        cached_file, cached_admin, merged = self._merged
        if cached_file is file_table and cached_admin is admin:
            return merged
        merged = file_table.merged_with(admin)
        self._merged = (file_table, admin, merged)
        return merged

    def _reload(self):
        try:
            self._table = read_routes_file(self.path)
        except RouteTableError as exc:
            if str(exc) != str(self.error):
                log.error("routes file not reloaded, keeping the last good table: %s", exc)
            self.error = exc
            return
        self.error = None
        log.info("routes reloaded from %s (%d aliases)", self.path, len(self._table.aliases))

    def _stat(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def source_of(alias: RouteAlias, file_table: RouteTable) -> str:
    """Where an effective alias comes from: `file`, `admin`, or `admin override` (of a file alias)."""
    if alias.source != "admin":
        return "file"
    return "admin override" if alias.name in file_table.aliases else "admin"


def endpoint_source(endpoint, file_table: RouteTable) -> str:
    """Where an effective endpoint comes from: `file`, `admin`, or `admin override` (of a file one)."""
    if endpoint.source != "admin":
        return "file"
    return "admin override" if endpoint.key in {e.key for e in file_table.endpoints} else "admin"


def defaults_sources(overrides: dict) -> dict[str, str]:
    """For each default, whether the effective value is routes.yaml's or the admin's."""
    return {spec.name: "admin" if spec.name in overrides else "file" for spec in fields(Defaults)}
