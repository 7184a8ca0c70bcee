"""The effective route table in force: `routes.yaml`, reloaded when it changes.

The table is immutable; a reload swaps one reference. A file that breaks while the server runs keeps
the last good table in force, and the error is logged once and kept in `RouteRegistry.error`.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .routes import RouteTable, RouteTableError, load_routes

log = logging.getLogger(__name__)

# How often, at most, the file's modification time is looked at (seconds).
STAT_INTERVAL = 0.5


def read_routes_file(path: Path) -> RouteTable:
    """Load a routes file; a missing file is an empty table (every name passes through)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return load_routes(stream, source=str(path))
    except FileNotFoundError:
        return RouteTable()
    except (OSError, UnicodeDecodeError) as exc:
        raise RouteTableError(f"cannot read: {exc}", str(path)) from None


class RouteRegistry:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.error: RouteTableError | None = None
        self._signature = self._stat()
        self._checked = time.monotonic()
        self._table = read_routes_file(self.path)  # a broken file at start-up raises

    def table(self) -> RouteTable:
        """The table in force, reloaded first if the file changed since the last look."""
        now = time.monotonic()
        if now - self._checked >= STAT_INTERVAL:
            self._checked = now
            signature = self._stat()
            if signature != self._signature:
                self._signature = signature
                self._reload()
        return self._table

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


_registry: RouteRegistry | None = None


def get_registry() -> RouteRegistry:
    """The process's registry, created on first use from settings.ROUTES_FILE."""
    global _registry
    if _registry is None:
        from django.conf import settings

        _registry = RouteRegistry(settings.ROUTES_FILE)
    return _registry


def reset_registry():
    """Forget the registry (tests that change ROUTES_FILE)."""
    global _registry
    _registry = None
